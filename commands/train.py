"""`coarse-loftr train`: train a teacher on ground truth, or a student with a teacher."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from coarse_loftr.inference.paths import SHARED_DATA
from coarse_loftr.training.config import (
    TRAINABLE,
    AugmentConfig,
    DepthConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
)

from . import CommandError, size_arg

DEFAULT_IMAGES = SHARED_DATA / "train-images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="student", help="model preset (student, teacher, ...)")
    parser.add_argument(
        "--images", type=Path, default=DEFAULT_IMAGES, help="folder of photos for random-homography pairs"
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="checkpoints, logs, history")
    parser.add_argument("--teacher", type=Path, help="teacher checkpoint: enables distillation")
    parser.add_argument("--size", type=size_arg, default=(320, 240), help="training pair size WxH")
    parser.add_argument("--pairs", type=int, default=16000, help="run length in pairs")
    parser.add_argument("--batch-size", type=int, default=8, help="virtual batch (pairs per step)")
    parser.add_argument("--micro-batch", type=int, default=4, help="pairs per forward pass")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--milestones",
        type=fractions_arg,
        help=f"fractions of --pairs where lr is multiplied by {OptimConfig.gamma}, comma-separated, "
        f"or 'none' (default {','.join(map(str, OptimConfig.milestones))}; pairs seen by the run "
        "that --init-from goes on from count too)",
    )
    parser.add_argument("--alpha", type=float, default=0.3, help="weight of the supervised loss")
    parser.add_argument("--kd-temperature", type=float, default=5.0)
    parser.add_argument("--kd-amplification", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, help="stop (and checkpoint) after this long")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument(
        "--init-from", type=Path, help="start from another run's checkpoint (new modules start fresh)"
    )
    parser.add_argument(
        "--trainable",
        choices=TRAINABLE,
        default="all",
        help="what learns: every parameter, or only the refinement heads (backbone and transformer "
        "frozen, no coarse matrix computed: several times faster a pair; use with --init-from)",
    )
    parser.add_argument("--val-pairs", type=int, help="held-out synthetic validation pairs (64)")
    parser.add_argument("--val-every", type=int, help="validate every this many pairs (1000)")
    parser.add_argument(
        "--corner-jitter",
        type=float,
        help=f"largest move of each corner of image1, a share of the size ({AugmentConfig.corner_jitter})",
    )
    parser.add_argument(
        "--max-shift",
        type=float,
        help=f"largest common move of image1's corners, a share of the size ({AugmentConfig.max_shift})",
    )
    parser.add_argument(
        "--max-rotation",
        type=float,
        help="largest rotation of image1 in degrees, drawn for half of the pairs "
        f"({AugmentConfig.max_rotation_deg:g})",
    )
    parser.add_argument(
        "--depth-scenes",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="BlendedMVS-layout scene folders: mix real depth pairs into training",
    )
    parser.add_argument(
        "--depth-share", type=float, help="fraction of training pairs taken from --depth-scenes (0.5)"
    )
    parser.add_argument(
        "--depth-tolerance",
        type=float,
        help="relative depth agreement for a projected point to count as visible (0.1)",
    )


def fractions_arg(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions like 0.6,0.85 or 'none': {text!r}") from None
    if not all(0.0 < value < 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"milestones must lie strictly between 0 and 1, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.images.is_dir():
        raise CommandError(f"image folder not found: {args.images}")
    if args.init_from is not None and not args.init_from.is_file():
        raise CommandError(f"checkpoint to start from not found: {args.init_from}")
    if args.teacher is not None and not args.teacher.is_file():
        raise CommandError(f"teacher checkpoint not found: {args.teacher}")
    for scene in args.depth_scenes or []:
        if not scene.is_dir():
            raise CommandError(f"depth scene folder not found: {scene}")
    if args.depth_share is not None and not 0.0 <= args.depth_share <= 1.0:
        raise CommandError(f"--depth-share must be in [0, 1], got {args.depth_share}")
    if args.depth_tolerance is not None and args.depth_tolerance <= 0:
        raise CommandError(f"--depth-tolerance must be positive, got {args.depth_tolerance}")
    if any(v is not None and not 0.0 <= v < 0.5 for v in (args.corner_jitter, args.max_shift)):
        raise CommandError("--corner-jitter and --max-shift must be in [0, 0.5)")
    if args.max_rotation is not None and not 0.0 <= args.max_rotation <= 180.0:
        raise CommandError(f"--max-rotation must be in [0, 180] degrees, got {args.max_rotation:g}")
    if any(v is not None and v < 1 for v in (args.val_pairs, args.val_every)):
        raise CommandError("--val-pairs and --val-every must be positive")
    # Options are checked before PyTorch loads, so mistakes fail fast.
    from coarse_loftr.inference.config import get_preset, with_overrides
    from coarse_loftr.training.homography_pairs import HomographyPairs, list_images, split_images
    from coarse_loftr.training.mixed_pairs import PairSource
    from coarse_loftr.training.trainer import train

    config = with_overrides(
        TrainConfig(
            model=args.model,
            image_size=args.size,
            total_pairs=args.pairs,
            num_threads=args.threads,
            seed=args.seed,
            trainable=args.trainable,
            augment=with_overrides(
                AugmentConfig(),
                corner_jitter=args.corner_jitter,
                max_shift=args.max_shift,
                max_rotation_deg=args.max_rotation,
            ),
            depth=with_overrides(DepthConfig(), tolerance=args.depth_tolerance, share=args.depth_share),
            loss=replace(
                LossConfig(),
                alpha=args.alpha,
                temperature=args.kd_temperature,
                amplification=args.kd_amplification,
            ),
            optim=with_overrides(
                OptimConfig(),
                lr=args.lr,
                batch_size=args.batch_size,
                micro_batch=args.micro_batch,
                milestones=args.milestones,
            ),
        ),
        val_pairs=args.val_pairs,
        val_every_pairs=args.val_every,
    )
    try:
        stride = get_preset(config.model).coarse_stride
    except ValueError as error:
        raise CommandError(str(error)) from None
    train_files, val_files = split_images(list_images(args.images), seed=config.seed)
    train_set: PairSource = HomographyPairs(
        train_files, config.image_size, stride, config.total_pairs, config.augment, seed=config.seed
    )
    if args.depth_scenes:
        from coarse_loftr.training.depth_pairs import DepthPairs
        from coarse_loftr.training.mixed_pairs import MixedPairs

        try:
            depth_set = DepthPairs(
                args.depth_scenes, config.image_size, stride, config.depth, config.augment, seed=config.seed
            )
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from None
        logging.info("mixing %d depth pairs at share %.2f", len(depth_set), config.depth.share)
        train_set = MixedPairs(train_set, depth_set, config.depth.share, seed=config.seed)
    # Validation stays on synthetic pairs so that runs with and without depth compare.
    val_set = HomographyPairs(
        val_files, config.image_size, stride, config.val_pairs, config.augment, seed=config.seed + 1000
    )
    state = train(
        config,
        train_set,
        val_set,
        args.run_dir,
        teacher_path=args.teacher,
        resume=args.resume,
        max_minutes=args.max_minutes,
        init_from=args.init_from,
    )
    print(
        f"done: {state.pairs_seen} pairs in {state.wall_seconds / 60:.1f} min -> {args.run_dir / 'last.pt'}"
    )
    return 0
