"""The accuracy / speed picture: AUC@5 against milliseconds per pair, one point per method.

Both numbers come from one `coarse-loftr eval` run (its results.json): the AUC at 5 px of
the method's chosen RANSAC threshold, and its mean matching time per pair. The methods run
one after the other on each pair, so load from other processes on a shared machine falls
on all of them alike, and the ratios between them hold within the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from coarse_loftr.inference.errors import InvalidInput

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    """Write the picture (PNG, about 40 KB) of `frontier_figure(figures, title)` to `path`."""
    frontier_figure(figures, title).savefig(path)


def frontier_figure(figures: dict, title: str) -> Figure:
    """The figure of `frontier_points(figures)`, each point named beside it where its label
    covers no other point or label; the time axis is logarithmic, since the peers span two
    orders of magnitude. Drawn on its own Agg canvas: no window, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = frontier_points(figures)
    figure = Figure(figsize=(6.4, 4.4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for name, ms, auc in points:
        ours = name.startswith("ours")
        axes.scatter([ms], [auc], s=46, marker="o" if ours else "s", color="tab:blue" if ours else "tab:gray")
    axes.set_xscale("log")
    axes.set_xlabel("milliseconds per pair (matching, mean; log scale)")
    axes.set_ylabel(f"AUC@{FRONTIER_AUC_PX}px (%)")
    low = min(auc for _, _, auc in points)
    axes.set_ylim(max(0.0, low - 8.0), min(100.0, max(auc for _, _, auc in points) + 6.0))
    axes.set_xlim(min(ms for _, ms, _ in points) / 1.6, max(ms for _, ms, _ in points) * 2.2)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    _place_labels(axes, points)
    return figure


#: where a label may sit beside its point, in order of preference: (dx, dy) in points
#: from the point to the label's anchor corner, and the label's horizontal alignment
_LABEL_SPOTS = ((6, 4, "left"), (6, -11, "left"), (-6, 4, "right"), (-6, -11, "right"), (6, 13, "left"))


def _place_labels(axes, points: list[tuple[str, float, float]]) -> None:
    """Name each point at the first spot of `_LABEL_SPOTS` whose text overlaps no marker and
    no label placed before it (the most accurate methods first); failing that, at the
    first spot. Needs the axes' final layout: positions are measured on the canvas."""
    renderer = axes.figure.canvas.get_renderer()
    half = 5.0  # a marker's half size on the canvas, in pixels (s=46 is about 7 points across)
    taken = []
    for _, ms, auc in points:
        x, y = axes.transData.transform((ms, auc))
        taken.append((x - half, y - half, x + half, y + half))
    for name, ms, auc in sorted(points, key=lambda point: -point[2]):
        for spot in _LABEL_SPOTS:
            label, extent = _label(axes, renderer, name, (ms, auc), spot)
            if not any(_overlap(extent, other) for other in taken):
                break
            label.remove()
        else:  # no free spot: the first one
            label, extent = _label(axes, renderer, name, (ms, auc), _LABEL_SPOTS[0])
        taken.append(extent)


def _label(axes, renderer, name: str, point: tuple[float, float], spot: tuple[int, int, str]):
    """Annotate `point` with `name` at `spot` -> the label and its canvas box (x0, y0, x1, y1)."""
    dx, dy, align = spot
    label = axes.annotate(name, point, textcoords="offset points", xytext=(dx, dy), ha=align, fontsize=8)
    box = label.get_window_extent(renderer)
    return label, (box.x0, box.y0, box.x1, box.y1)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether two canvas boxes (x0, y0, x1, y1) overlap."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
