"""`coarse-loftr plot-frontier RESULTS.json --out PNG`: accuracy (AUC@5) against milliseconds
per pair of every method of one `coarse-loftr eval` run (which also writes it as
frontier.png beside its results.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CommandError

DEFAULT_OUT = Path("docs/images/frontier.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results.json written by coarse-loftr eval")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    parser.add_argument("--title", default=None, help="picture title (default: the manifest and pairs)")


def run(args: argparse.Namespace) -> int:
    from coarse_loftr.training.evaluation.frontier import (
        frontier_points,
        frontier_title,
        plot_frontier,
        read_results,
    )

    figures = read_results(args.results)
    frontier_points(figures)  # refuses a file that is not an eval run's results, in one line
    title = args.title or frontier_title(figures)
    if args.out.suffix.lower() != ".png":
        raise CommandError(f"--out must be a .png file, got {args.out}")
    if not args.out.parent.is_dir():
        raise CommandError(f"output folder not found: {args.out.parent}")
    try:
        plot_frontier(figures, args.out, title)
    except ImportError:
        raise CommandError("the plot needs matplotlib: pip install 'coarse-loftr[train]'") from None
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
