"""`coarse-loftr bench`: latency and FPS of every available backend and input size,
split into pre-processing / inference / match extraction, with the model's FLOPs and
OpenCV ORB and SIFT (4000 features) as peers, all on the same images in one run; with
`--peers` also the learned peers of `eval` (the `peers` extra) and the seed's published
student run as its demo runs it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coarse_loftr.commands import CommandError, sizes_arg
from coarse_loftr.inference.backends import KINDS, available_backends
from coarse_loftr.inference.backends.base import BackendUnavailable
from coarse_loftr.inference.config import PRESETS
from coarse_loftr.inference.weights import WeightsError
from coarse_loftr.training.evaluation.methods import LEARNED_PEERS, OPENCV_METHODS, PEER_NAMES, SEED
from coarse_loftr.training.evaluation.seed import SEED_CHECKPOINT, SEED_INPUT_SIZE

SEED_BASELINE_NOTE = (
    "random-initialised coarse_loftr_trt preset: the published seed student's "
    "architecture and FLOPs, so its speed, not its matches"
)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="model to time: a weights folder (manifest.json), an .onnx file, or a "
        "checkpoint (.pt/.ckpt, any format, exported on the fly); default: shipped",
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="also time a random-initialised model of this preset (speed only)",
    )
    parser.add_argument(
        "--compare-checkpoint",
        type=Path,
        action="append",
        default=[],
        help="also time this checkpoint (e.g. the published LoFTR_teacher.pt); repeatable",
    )
    parser.add_argument(
        "--seed-baseline",
        action="store_true",
        help="also time a random-init coarse_loftr_trt at 640x480: the published seed "
        "student's architecture and FLOPs",
    )
    parser.add_argument("--pairs", type=int, default=10, help="image pairs (default 10)")
    parser.add_argument(
        "--rotations",
        action="store_true",
        help="also time each model with its rotation search (image1 at four quarter turns)",
    )
    parser.add_argument(
        "--sizes",
        type=sizes_arg,
        default=[(320, 240), (480, 360), (640, 480)],
        metavar="WxH,...",
        help="input sizes (default 320x240,480x360,640x480)",
    )
    parser.add_argument(
        "--backends",
        type=_names,
        default=None,
        metavar="NAME,...",
        help=f"any of {', '.join(k for k in KINDS if k != 'auto')} (default: all available)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per pair (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every runtime and OpenCV")
    parser.add_argument(
        "--peers",
        type=_names,
        default=["orb", "sift"],
        metavar="NAME,...",
        help=f"any of {', '.join(PEER_NAMES)}, or none (default orb,sift; "
        f"{', '.join(LEARNED_PEERS)} need the 'peers' extra, {SEED} torch and onnx)",
    )
    parser.add_argument(
        "--peer-sizes",
        type=sizes_arg,
        default=None,
        metavar="WxH,...",
        help=f"sizes the learned peers are timed at (default: --sizes; {SEED} always runs at "
        f"{SEED_INPUT_SIZE[0]}x{SEED_INPUT_SIZE[1]})",
    )
    parser.add_argument(
        "--seed-checkpoint",
        type=Path,
        default=SEED_CHECKPOINT,
        help=f"the published student that peer {SEED} runs (default {SEED_CHECKPOINT})",
    )
    parser.add_argument("--features", type=int, default=4000, help="ORB/SIFT features per image")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _models(args: argparse.Namespace, tmp: Path) -> list:
    from coarse_loftr.inference.benchmark import ModelUnderTest, prepare_models

    models = []
    needs_torch = (
        args.preset
        or args.seed_baseline
        or args.compare_checkpoint
        or (args.weights is not None and args.weights.suffix.lower() in (".pt", ".ckpt", ".pth"))
    )
    if needs_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise CommandError(
                "exporting checkpoints or presets needs PyTorch: pip install 'coarse-loftr[train]'"
            ) from None
    try:
        if args.weights is not None and args.weights.suffix.lower() in (".pt", ".ckpt", ".pth"):
            models.append(
                prepare_models(tmp / "weights", args.sizes, checkpoint=args.weights, label=args.weights.name)
            )
        elif args.weights is not None:
            models.append(
                ModelUnderTest(args.weights.stem if args.weights.suffix else args.weights.name, args.weights)
            )
        if args.preset:
            models.append(
                prepare_models(
                    tmp / "preset",
                    args.sizes,
                    preset=args.preset,
                    label=f"{args.preset} (random init)",
                    note="random-initialised: speed only",
                )
            )
        for index, checkpoint in enumerate(args.compare_checkpoint):
            models.append(
                prepare_models(
                    tmp / f"compare{index}", args.sizes, checkpoint=checkpoint, label=checkpoint.name
                )
            )
        if args.seed_baseline:
            models.append(
                prepare_models(
                    tmp / "seed",
                    [(640, 480)],
                    preset="coarse_loftr_trt",
                    label="seed baseline",
                    note=SEED_BASELINE_NOTE,
                )
            )
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    if args.weights is None:
        # The shipped model is always timed (first) unless --weights names another one.
        from coarse_loftr.inference.weights import shipped_weights_dir

        try:
            models.insert(0, ModelUnderTest("shipped", shipped_weights_dir()))
        except WeightsError as error:
            if not models:
                raise CommandError(f"{error}; pass --weights, --preset or --seed-baseline") from None
    return models


def _other_peers(args: argparse.Namespace, names: tuple[str, ...], tmp: Path) -> list:
    """The learned peers and the seed among `names`, loaded (their errors name the extra)."""
    from coarse_loftr.inference.benchmark import BENCH_SPIN_WAIT, PeerUnderTest

    others = []
    for name in names:
        if name in LEARNED_PEERS:
            from coarse_loftr.training.evaluation.peers import learned_peer

            peer = learned_peer(name)
            import torch  # present: learned_peer needs it

            if args.threads is not None:
                torch.set_num_threads(args.threads)
            backend = f"pytorch {torch.__version__} ({torch.get_num_threads()} threads)"
            sizes = tuple(args.peer_sizes) if args.peer_sizes else None
            others.append(PeerUnderTest(peer, backend, sizes, "detect, describe and match as inference"))
        elif name == SEED:
            from coarse_loftr.training.evaluation.seed import PublishedStudent

            seed = PublishedStudent(
                args.seed_checkpoint, tmp, num_threads=args.threads, spin_wait=BENCH_SPIN_WAIT
            )
            note = (
                f"published {args.seed_checkpoint.name}, exported to ONNX, run as its demo: "
                "640x480, confidence > 0.01, cell corners"
            )
            others.append(PeerUnderTest(seed, seed.matcher.backend.describe(), (SEED_INPUT_SIZE,), note))
    return others


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.inference.benchmark import load_pairs, run_benchmark, temporary_folder

    if args.pairs < 1 or args.repeat < 1:
        raise CommandError("--pairs and --repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise CommandError("--threads must be at least 1")
    peers = tuple(p for p in args.peers if p != "none")
    unknown = [p for p in peers if p not in PEER_NAMES]
    if unknown:
        raise CommandError(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEER_NAMES)} or none")
    available = available_backends()
    backends = args.backends or available
    for name in backends:
        if name not in KINDS or name == "auto":
            raise CommandError(f"unknown backend {name!r}; choose from {', '.join(KINDS[1:])}")
        if name not in available:
            print(f"skipping backend {name}: not available here", file=sys.stderr)
    backends = [name for name in backends if name in available]
    pairs, source = load_pairs(args.pairs)
    with temporary_folder() as tmp:
        models = _models(args, Path(tmp))
        others = _other_peers(args, peers, Path(tmp))
        try:
            report = run_benchmark(
                models,
                backends,
                args.sizes,
                pairs,
                source,
                repeat=args.repeat,
                threads=args.threads,
                peers=tuple(p for p in peers if p in OPENCV_METHODS),
                features=args.features,
                others=others,
                rotations=args.rotations,
            )
        except (WeightsError, BackendUnavailable, ValueError) as error:
            raise CommandError(str(error)) from None
    print(report.to_json() if args.json else report.table())
    return 0
