"""`coarse-loftr make-val-set IMAGES --out DIR`: a validation manifest for `coarse-loftr eval`,
HPatches-style pairs rendered from the validation split of the training photos, to choose
settings (such as the default input size) on without touching the held-out eval set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CommandError

DEFAULT_OUT = Path("runs/val-set")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, help="folder of training photos (../shared/data/train-images)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write ({DEFAULT_OUT})")
    parser.add_argument("--pairs-per-level", type=int, default=40, help="pairs of each difficulty (40)")
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed, which draws the split")
    parser.add_argument(
        "--levels",
        type=lambda text: tuple(part.strip() for part in text.split(",")),
        help="difficulties to render, comma-separated, among easy, medium, hard (the eval "
        "protocol's levels, the default) and rotated (45-90 degrees, ours)",
    )


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.training.validation_set import write_validation_set

    if args.pairs_per_level < 1:
        raise CommandError(f"--pairs-per-level must be at least 1, got {args.pairs_per_level}")
    if not args.images.is_dir():
        raise CommandError(f"photo folder not found: {args.images}")
    try:
        manifest = write_validation_set(
            args.images, args.out, args.pairs_per_level, seed=args.seed, levels=args.levels
        )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise CommandError(str(error)) from None
    count, photos = len(manifest["pairs"]), len(manifest["photos"])
    print(f"wrote {args.out / 'manifest.json'}: {count} pairs of {photos} photos", file=sys.stderr)
    return 0
