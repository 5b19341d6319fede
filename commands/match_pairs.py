"""`coarse-loftr match-pairs IMAGE_DIR --pairs PAIRS.txt --out OUT`: match an hloc pairs
list into OUT/matches.h5, in this process or on Ray actors (`--ray local|ADDRESS`), and
optionally write a COLMAP database (`--colmap DB`) and reconstruct (`--reconstruct`).

Needs the `distributed` extra (h5py, pycolmap, ray, tqdm).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from coarse_loftr.commands import CommandError, size_arg
from coarse_loftr.inference.backends import KINDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image_dir", type=Path, help="folder the pairs file's names are relative to")
    parser.add_argument("--pairs", type=Path, required=True, help="hloc pairs file: two names per line")
    parser.add_argument("--out", type=Path, required=True, help="output folder (matches.h5 goes there)")
    parser.add_argument(
        "--ray", metavar="local|ADDRESS", help="spread the pairs over Ray actors (local: a Ray on 127.0.0.1)"
    )
    parser.add_argument("--actors", type=int, help="Ray actors (default: the cluster's CPUs / --actor-cpus)")
    parser.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs per Ray actor (default 1)")
    parser.add_argument("--colmap", type=Path, metavar="DB", help="write a COLMAP database here")
    parser.add_argument(
        "--reconstruct",
        type=Path,
        metavar="DIR",
        help="run COLMAP's incremental mapper on the database (needs --colmap); models go to DIR",
    )
    parser.add_argument("--resume", action="store_true", help="keep OUT/matches.h5 and skip its pairs")
    parser.add_argument(
        "--ransac",
        choices=("fundamental", "homography"),
        default="fundamental",
        help="geometry fitted per pair (default fundamental, for 3-D scenes)",
    )
    parser.add_argument("--ransac-threshold", type=float, help="inlier threshold, pixels of image1")
    parser.add_argument("--grid", type=float, default=1.0, help="keypoint merge grid for COLMAP, pixels")
    parser.add_argument("--weights", type=Path, help="an .onnx model or a weights folder (default: shipped)")
    parser.add_argument("--backend", default="auto", choices=KINDS)
    parser.add_argument(
        "--size", type=size_arg, metavar="WxH", help="model input size (default: the model's)"
    )
    parser.add_argument("--threshold", type=float, help="minimum match confidence")
    parser.add_argument("--max-matches", type=int, help="keep the most confident matches per pair")
    parser.add_argument("--threads", type=int, help="CPU threads of the runtime (per actor with --ray)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        from tqdm import tqdm

        from coarse_loftr.inference.batch.colmap import reconstruct, write_database
        from coarse_loftr.inference.batch.pairs import read_pairs
        from coarse_loftr.inference.batch.runner import LocalPool, MatchSettings, Pool, run_pairs
        from coarse_loftr.inference.batch.store import MatchStore, read_outcomes
    except ImportError as error:
        extra = 'pip install "coarse-loftr[distributed]"'
        raise CommandError(f"match-pairs needs h5py, pycolmap and tqdm: {extra} ({error})") from None
    from coarse_loftr.inference.backends.base import BackendUnavailable
    from coarse_loftr.inference.weights import WeightsError

    if not args.image_dir.is_dir():
        raise CommandError(f"no such folder: {args.image_dir}")
    if args.reconstruct is not None and args.colmap is None:
        raise CommandError("--reconstruct needs --colmap DB")
    pairs = read_pairs(args.pairs)
    options = {"threshold": args.threshold, "max_matches": args.max_matches}
    settings = MatchSettings(
        weights=args.weights,
        backend=args.backend,
        size=args.size,
        num_threads=args.threads,
        options={k: v for k, v in options.items() if v is not None},
        ransac=args.ransac,
        ransac_threshold=args.ransac_threshold,
    )
    started_ray = False
    start = time.perf_counter()
    try:  # the matching is timed from when every model is loaded
        if args.ray:
            from coarse_loftr.inference.batch.ray_pool import RayPool, connect

            started_ray = connect(args.ray)
            ray_pool = RayPool(settings, actors=args.actors, actor_cpus=args.actor_cpus)
            pool: Pool = ray_pool
            where = f"{len(ray_pool.actors)} Ray actors"
        else:
            pool = LocalPool(settings)
            where = "this process"
        ready = time.perf_counter()
        with MatchStore(args.out / "matches.h5", resume=args.resume) as store:

            def progress(outcomes, count):
                return tqdm(outcomes, total=count, unit="pair", disable=args.no_progress)

            summary = run_pairs(pairs, args.image_dir, store, pool, progress)
    except (WeightsError, BackendUnavailable, FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    seconds = time.perf_counter() - ready
    report: dict[str, Any] = {
        "pairs": summary.total,
        "skipped": summary.skipped,
        "matched": summary.matched,
        "failed": summary.failed,
        "startup_s": round(ready - start, 2),  # Ray, the actors and their models
        "seconds": round(seconds, 2),
        "pairs_per_s": round((summary.matched + summary.failed) / seconds, 3) if seconds > 0 else None,
        "where": where,
        "matches": str(args.out / "matches.h5"),
    }
    for pair, reason in summary.failures:
        print(f"failed: {pair.name0} {pair.name1}: {reason}")
    if args.colmap is not None:
        outcomes = read_outcomes(args.out / "matches.h5")
        database = write_database(outcomes, args.image_dir, args.colmap, args.grid)
        report["colmap"] = {"database": str(args.colmap), **database.__dict__}
        if args.reconstruct is not None:
            report["reconstruction"] = reconstruct(args.colmap, args.image_dir, args.reconstruct)
    print(json.dumps(report))
    return 0
