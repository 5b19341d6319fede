"""`coarse-loftr plot-training`: loss and validation curves of one or more training runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", type=Path, nargs="+", metavar="RUN", help="run folders (or history.json files) to compare"
    )
    parser.add_argument(
        "--labels", nargs="+", metavar="LABEL", help="one legend label per run (default: folder names)"
    )
    parser.add_argument("--output", "-o", type=Path, default=Path("training_curves.png"), help="PNG to write")
    parser.add_argument(
        "--smoothing", type=int, default=20, help="moving-average window over training records (1 = raw)"
    )
    parser.add_argument("--x-axis", choices=("pairs", "hours"), default="pairs")
    parser.add_argument("--title", help="figure title")


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.training.plots import Run, load_history, write_plot

    if args.labels is not None and len(args.labels) != len(args.runs):
        raise CommandError(f"{len(args.labels)} labels for {len(args.runs)} runs")
    if args.smoothing < 1:
        raise CommandError(f"--smoothing must be at least 1, got {args.smoothing}")
    labels = args.labels or [p.name if p.is_dir() else p.parent.name for p in args.runs]
    try:
        runs = [Run(label, load_history(path)) for label, path in zip(labels, args.runs)]
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None
    output = write_plot(runs, args.output, smoothing=args.smoothing, x_axis=args.x_axis, title=args.title)
    print(f"wrote {output}")
    return 0
