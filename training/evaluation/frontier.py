"""The accuracy / speed picture: AUC@5 against milliseconds per pair, one point per method.

Both numbers come from one `coarse-loftr eval` run (its results.json): the AUC at 5 px of
the method's chosen RANSAC threshold, and its mean matching time per pair. The methods run
one after the other on each pair, so load from other processes on a shared machine falls
on all of them alike, and the ratios between them hold within the run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from coarse_loftr.inference.errors import InvalidInput

#: the AUC threshold (px) on the y axis
FRONTIER_AUC_PX = "5"


class FrontierError(InvalidInput):
    """The results file cannot be plotted; the message says why."""


def frontier_points(figures: dict) -> list[tuple[str, float, float]]:
    """results.json content -> [(method, match ms per pair, AUC@5 in percent)], fastest first."""
    methods = figures.get("methods") if isinstance(figures, dict) else None
    if not isinstance(methods, dict) or not methods:
        raise FrontierError("no 'methods' in the results (expected the results.json of coarse-loftr eval)")
    points = []
    for name, entry in methods.items():
        try:
            overall = entry["overall"]
            points.append((str(name), float(overall["match_ms"]), float(overall["auc"][FRONTIER_AUC_PX])))
        except (KeyError, TypeError, ValueError):
            raise FrontierError(f"method {name!r} has no overall match_ms and AUC@5 in the results") from None
    return sorted(points, key=lambda point: point[1])


def frontier_title(figures: dict) -> str:
    """'eval-dev: 124 pairs, accuracy vs time per pair (one run)' for a results.json's
    content (checked by `frontier_points` first)."""
    first = next(iter(figures["methods"].values()))
    pairs = first.get("overall", {}).get("pairs", "?")
    manifest = Path(str(figures.get("manifest", "?"))).parent.name or "?"
    return f"{manifest}: {pairs} pairs, accuracy vs time per pair (one run)"


def read_results(path: Path) -> dict:
    """The JSON of an eval run's results.json."""
    if not path.is_file():
        raise FrontierError(f"results file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FrontierError(f"{path} is not valid JSON: {error}") from None


def plot_frontier(figures: dict, path: Path, title: str) -> None:
    """Write the picture (PNG, about 40 KB) of `frontier_points(figures)` to `path`; the
    time axis is logarithmic, since the peers span two orders of magnitude."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    points = frontier_points(figures)
    figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for name, ms, auc in points:
        ours = name.startswith("ours")
        axes.scatter([ms], [auc], s=46, marker="o" if ours else "s", color="tab:blue" if ours else "tab:gray")
        # A label goes below its point when a point close in time sits a little above it, so
        # the two labels do not print over each other.
        crowded = any(
            0 < other_auc - auc < 10 and abs(math.log(other_ms / ms)) < math.log(1.6)
            for _, other_ms, other_auc in points
        )
        axes.annotate(
            name, (ms, auc), textcoords="offset points", xytext=(6, -11) if crowded else (6, 4), fontsize=8
        )
    axes.set_xscale("log")
    axes.set_xlabel("milliseconds per pair (matching, mean; log scale)")
    axes.set_ylabel(f"AUC@{FRONTIER_AUC_PX}px (%)")
    low = min(auc for _, _, auc in points)
    axes.set_ylim(max(0.0, low - 8.0), min(100.0, max(auc for _, _, auc in points) + 6.0))
    axes.set_xlim(min(ms for _, ms, _ in points) / 1.6, max(ms for _, ms, _ in points) * 2.2)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
