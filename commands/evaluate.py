"""`coarse-loftr eval MANIFEST`: HPatches-protocol homography evaluation.

Our matcher, OpenCV SIFT / ORB, the learned peers of the `peers` extra (XFeat, XFeat +
LighterGlue, ALIKED + LightGlue), the seed's published student and any other model
(`--compare`) run on the same pairs; every method's matches go through the same USAC MAGSAC
fit and corner-error metric. `--stereo` adds the real-scene check (a stereo pair with
ground-truth disparity). Writes results.md, curve.png, frontier.png (AUC@5 against time per
pair), results.json and pairs.json to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from coarse_loftr.inference.config import MatchConfig, RegistrationConfig
from coarse_loftr.training.evaluation.methods import LEARNED_PEERS, METHOD_NAMES, OURS, SEED
from coarse_loftr.training.evaluation.seed import SEED_CHECKPOINT

from . import CommandError, size_arg

#: what `--methods` runs when not given: the methods that need no optional extra
DEFAULT_METHODS = (OURS, "sift", "orb")
ROTATION_SEARCH = f"{OURS} + rotation search"
DEFAULT_OUT = Path("runs/eval")
#: input size (W, H) a `--compare` checkpoint is exported at when `--size` is not given
DEFAULT_EXPORT_SIZE = (640, 480)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class RansacChoice:
    """Candidate inlier thresholds (px) and whether each method keeps its best one
    (`best`) or all are reported with the first as the headline."""

    thresholds: tuple[float, ...]
    best: bool

    def describe(self) -> str:
        values = "/".join(f"{t:g}" for t in self.thresholds)
        if self.best:
            return f"per method the threshold with the best AUC@5 among {values} px"
        if len(self.thresholds) == 1:
            return f"inlier threshold {values} px"
        return f"inlier threshold {self.thresholds[0]:g} px (also reported: {values} px)"


def parse_ransac(text: str) -> RansacChoice:
    """'3' | '1,3,5,8' | 'best:1,3,5,8' -> RansacChoice."""
    best = text.startswith("best:")
    body = text[len("best:") :] if best else text
    try:
        values = tuple(float(part) for part in body.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected pixels like 3, 1,3,5,8 or best:1,3,5,8, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"RANSAC thresholds must be positive pixels, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"repeated RANSAC threshold in {text!r}")
    return RansacChoice(values, best)


def parse_compare(text: str) -> tuple[Path, str]:
    """'PATH[:label]' -> (path, label); the label defaults to the file's stem."""
    path, label = Path(text), None
    if not path.exists() and ":" in text:
        head, _, tail = text.rpartition(":")
        path, label = Path(head), tail.strip()
    if not label:
        label = path.stem
    return path, label


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "manifest", type=Path, help="manifest.json with pairs {id, a, b, H_a_to_b, kind, difficulty, group}"
    )
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, from {', '.join(METHOD_NAMES)} (default: {','.join(DEFAULT_METHODS)}; "
        f"{', '.join(LEARNED_PEERS)} need the 'peers' extra, {SEED} needs torch and onnx)",
    )
    parser.add_argument(
        "--seed-checkpoint",
        type=Path,
        default=SEED_CHECKPOINT,
        help=f"the published student that method {SEED} runs (default {SEED_CHECKPOINT})",
    )
    parser.add_argument(
        "--stereo",
        action="store_true",
        help="also the real-scene check: Middlebury's motorcycle stereo pair (in scikit-image, "
        "'peers' extra) scored against its disparity, precision within 1/2/5 px",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="PATH[:label]",
        help="another model to run on the same pairs: an .onnx file or a checkpoint "
        "(.pt/.ckpt, exported on the fly; needs torch); repeatable",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let --compare checkpoints unpickle arbitrary objects (trusted files only)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="our model: .onnx file or weights folder (default: the shipped model)",
    )
    parser.add_argument("--backend", default="auto", help="runtime of our model (default: auto)")
    parser.add_argument(
        "--size",
        type=size_arg,
        default=None,
        metavar="WxH",
        help="model input size (default: the model's own; --compare checkpoints "
        f"are exported at {DEFAULT_EXPORT_SIZE[0]}x{DEFAULT_EXPORT_SIZE[1]})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=MatchConfig.threshold,
        help=f"match confidence threshold (default {MatchConfig.threshold})",
    )
    parser.add_argument("--no-refine", action="store_true", help="our matcher without sub-cell refinement")
    parser.add_argument(
        "--refine-ablation",
        action="store_true",
        help="run our matcher with and without refinement (same weights)",
    )
    parser.add_argument(
        "--rotations",
        action="store_true",
        help="also run our matcher with its rotation search (image b at four quarter turns)",
    )
    parser.add_argument(
        "--ransac-threshold",
        type=parse_ransac,
        default=RansacChoice((RegistrationConfig.threshold_px,), False),
        metavar="PX[,PX...]|best:PX,PX...",
        help="MAGSAC inlier threshold(s) in pixels; best:1,3,5,8 keeps, per method, "
        f"the one with the best AUC@5 (default {RegistrationConfig.threshold_px:g})",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N pairs")
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="K",
        help="only every K-th pair (after --limit): a subset spread over a manifest ordered by "
        "difficulty, for slow methods (default 1: all)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")


def _our_methods(args: argparse.Namespace) -> list:
    """Our matcher as one method, plus the same without refinement (--refine-ablation)
    and with the rotation search (--rotations)."""
    from coarse_loftr.inference import Matcher
    from coarse_loftr.training.evaluation import MatcherMethod

    try:
        matcher = Matcher(weights=args.weights, backend=args.backend, size=args.size)
    except (OSError, RuntimeError, ValueError) as error:
        raise CommandError(f"cannot load our model: {error}") from None
    options = {"threshold": args.threshold, "refine": not args.no_refine}
    if args.refine_ablation:
        methods = [
            MatcherMethod(OURS, matcher, {**options, "refine": True}),
            MatcherMethod(f"{OURS} (no refine)", matcher, {**options, "refine": False}),
        ]
    else:
        methods = [MatcherMethod(f"{OURS} (no refine)" if args.no_refine else OURS, matcher, options)]
    if args.rotations:
        methods.append(MatcherMethod(ROTATION_SEARCH, matcher, {**options, "rotations": True}))
    return methods


def _compare_method(spec: str, args: argparse.Namespace, scratch: Path):
    """A `--compare` model: an ONNX file directly, a checkpoint exported to ONNX first."""
    from coarse_loftr.training.evaluation import MatcherMethod

    path, label = parse_compare(spec)
    if not path.is_file():
        raise CommandError(f"--compare: file not found: {path}")
    onnx_path = path
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        try:
            from coarse_loftr.inference.checkpoint import load_checkpoint
            from coarse_loftr.inference.export import export_onnx
        except ImportError as error:
            raise CommandError(
                f"--compare {path}: exporting a checkpoint needs torch and onnx "
                f"(pip install 'coarse-loftr[train]'): {error}"
            ) from None
        onnx_path = scratch / f"{len(list(scratch.iterdir()))}_{path.stem}.onnx"
        try:
            model, _ = load_checkpoint(path, allow_pickle=args.allow_pickle)
            export_onnx(model, onnx_path, args.size or DEFAULT_EXPORT_SIZE)
        except (OSError, ValueError, RuntimeError) as error:
            raise CommandError(f"--compare {path}: {error}") from None
    elif path.suffix.lower() != ".onnx":
        raise CommandError(
            f"--compare {path}: expected an .onnx file or a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    from coarse_loftr.inference import Matcher

    try:
        # The ONNX graph fixes its own input size (a checkpoint was exported at --size).
        matcher = Matcher(weights=onnx_path, backend=args.backend)
    except (OSError, RuntimeError, ValueError) as error:
        raise CommandError(f"--compare {path}: cannot load: {error}") from None
    return MatcherMethod(label, matcher, {"threshold": args.threshold, "refine": not args.no_refine})


def _named_method(name: str, args: argparse.Namespace, scratch: Path) -> list:
    """The methods `--methods NAME` stands for (ours may be two, with --refine-ablation)."""
    from coarse_loftr.training.evaluation import OpenCVFeatures

    if name == OURS:
        return _our_methods(args)
    if name in LEARNED_PEERS:
        from coarse_loftr.training.evaluation.peers import learned_peer

        return [learned_peer(name)]
    if name == SEED:
        from coarse_loftr.training.evaluation.seed import PublishedStudent

        return [PublishedStudent(args.seed_checkpoint, scratch, backend=args.backend)]
    return [OpenCVFeatures(name)]


def _build_methods(args: argparse.Namespace, scratch: Path) -> list:
    names = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = sorted(set(names) - set(METHOD_NAMES))
    if unknown:
        raise CommandError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_NAMES)}")
    if args.refine_ablation and args.no_refine:
        raise CommandError("--refine-ablation already runs without refinement; drop --no-refine")
    if args.refine_ablation and OURS not in names:
        raise CommandError(f"--refine-ablation needs {OURS} among --methods")
    if args.rotations and OURS not in names:
        raise CommandError(f"--rotations needs {OURS} among --methods")
    methods = []
    for name in dict.fromkeys(names):
        methods += _named_method(name, args, scratch)
    methods += [_compare_method(spec, args, scratch) for spec in args.compare]
    if not methods:
        raise CommandError("no methods to evaluate (--methods is empty and no --compare)")
    seen = [m.name for m in methods]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise CommandError(f"two methods are named {', '.join(duplicates)}: give --compare a :label")
    return methods


def _progress(done: int, total: int) -> None:
    print(f"\r  pair {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.training.evaluation import ManifestError, evaluate, load_manifest
    from coarse_loftr.training.evaluation.frontier import frontier_title, plot_frontier
    from coarse_loftr.training.evaluation.report import markdown_table, per_pair_json, plot_curves, to_json
    from coarse_loftr.training.evaluation.stereo import evaluate_stereo, load_motorcycle, stereo_lines

    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be at least 1, got {args.limit}")
    if args.every < 1:
        raise CommandError(f"--every must be at least 1, got {args.every}")
    if not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold must be within [0, 1], got {args.threshold}")
    try:
        pairs = load_manifest(args.manifest, limit=args.limit)[:: args.every]
    except ManifestError as error:
        raise CommandError(str(error)) from None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create output folder {args.out}: {error}") from None

    ransac: RansacChoice = args.ransac_threshold
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coarse-loftr-eval-")))
        stereo_pair = load_motorcycle() if args.stereo else None
        methods = _build_methods(args, scratch)
        print(f"evaluating {', '.join(m.name for m in methods)} on {len(pairs)} pairs", file=sys.stderr)
        try:
            results = evaluate(pairs, methods, ransac.thresholds, ransac.best, progress=_progress)
        except ManifestError as error:
            raise CommandError(str(error)) from None
        stereo = evaluate_stereo(stereo_pair, methods) if stereo_pair is not None else []

    manifest = str(args.manifest)
    selection = ransac.describe()
    by_name = {r.name: r for r in results}
    ablation = (by_name[OURS], by_name[f"{OURS} (no refine)"]) if args.refine_ablation else None
    table = markdown_table(results, manifest, selection, ablation)
    figures = to_json(results, manifest, ransac.thresholds, selection)
    if stereo_pair is not None:
        table += "\n".join(stereo_lines(stereo_pair.name, stereo)) + "\n"
        figures["stereo"] = {"scene": stereo_pair.name, "methods": {s.method: s.to_json() for s in stereo}}
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(figures, indent=1) + "\n")
    (args.out / "pairs.json").write_text(json.dumps(per_pair_json(results), indent=1) + "\n")
    try:
        plot_curves(results, args.out / "curve.png", f"{args.manifest.parent.name}: {len(pairs)} pairs")
        plot_frontier(figures, args.out / "frontier.png", frontier_title(figures))
    except ImportError:
        raise CommandError(
            f"the plot needs matplotlib (pip install 'coarse-loftr[train]'); the tables are in {args.out}"
        ) from None
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print((args.out / "results.md").read_text())
    print(f"wrote {args.out}/results.md, results.json, pairs.json, curve.png, frontier.png", file=sys.stderr)
    return 0
