"""Training curves of one or more runs from their history.json: smoothed loss terms and
the validation metrics against pairs seen, one colour per run (the seed paper's
figures 1-2 compare a student trained with and without a teacher this way)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

#: (history key, panel title). The combined loss of a distilled run includes the
#: distillation term, so "supervised" is the loss that compares across runs.
LOSS_PANELS = (
    ("train_loss", "training loss (combined)"),
    ("train_supervised", "supervised loss"),
    ("train_coarse", "coarse loss"),
    ("train_fine", "fine loss (fine px^2)"),
    ("train_distill", "distillation loss"),
)
VAL_PANELS = (
    ("val_median_error_px", "val median error (px)"),
    ("val_precision_1px", "val precision < 1 px"),
    ("val_precision_3px", "val precision < 3 px"),
    ("val_coarse_recall", "val coarse recall"),
    ("val_matches_per_pair", "val matches per pair"),
)
X_AXES = {"pairs": ("pairs", 1.0, "pairs seen"), "hours": ("wall_seconds", 1 / 3600, "hours")}


@dataclass
class Run:
    label: str
    history: list[dict]


def load_history(path: Path) -> list[dict]:
    """Records of a run folder (or of a history.json given directly), in order."""
    path = Path(path)
    file = path / "history.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no history.json in {path}")
    try:
        history = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file}: not valid JSON ({error})") from None
    if not isinstance(history, list) or not all(isinstance(r, dict) and "pairs" in r for r in history):
        raise ValueError(f"{file}: expected a list of records with 'pairs'")
    if not history:
        raise ValueError(f"{file}: empty history")
    return history


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over `window` records (shorter at the start, so the
    curve begins at the first record instead of lagging by a window)."""
    if window <= 1 or len(values) == 0:
        return values.astype(np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def series(history: list[dict], key: str, x_key: str, x_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the records holding a finite `key`."""
    rows = [
        (r[x_key] * x_scale, r[key])
        for r in history
        if r.get(key) is not None and np.isfinite(r[key]) and x_key in r
    ]
    if not rows:
        return np.zeros(0), np.zeros(0)
    x, y = np.array(rows, dtype=np.float64).T
    return x, y


def _panel(ax: Axes, runs: list[Run], key: str, title: str, x_key: str, x_scale: float, window: int) -> bool:
    drawn = False
    for k, run in enumerate(runs):
        x, y = series(run.history, key, x_key, x_scale)
        if len(x) == 0:
            continue
        colour = f"C{k % 10}"
        if window > 1 and key.startswith("train_"):
            ax.plot(x, y, color=colour, alpha=0.2, linewidth=0.8)
            ax.plot(x, smooth(y, window), color=colour, linewidth=1.6, label=run.label)
        else:
            ax.plot(
                x,
                y,
                color=colour,
                linewidth=1.6,
                marker="o" if len(x) < 30 else None,
                markersize=3,
                label=run.label,
            )
        drawn = True
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    return drawn


def plot_runs(
    runs: list[Run], smoothing: int = 20, x_axis: str = "pairs", title: str | None = None
) -> Figure:
    """A 2 x 5 figure: loss terms (top, raw faint and smoothed over `smoothing`
    records) and validation metrics (bottom), x = pairs seen or training hours."""
    if not runs:
        raise ValueError("no runs to plot")
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {', '.join(X_AXES)}, got {x_axis!r}")
    x_key, x_scale, x_label = X_AXES[x_axis]
    figure = Figure(figsize=(20, 8), dpi=100, layout="constrained")
    axes = figure.subplots(2, len(LOSS_PANELS))
    for row, panels in enumerate((LOSS_PANELS, VAL_PANELS)):
        for ax, (key, panel_title) in zip(axes[row], panels):
            _panel(ax, runs, key, panel_title, x_key, x_scale, smoothing)
            ax.set_xlabel(x_label)
            if ax.lines and x_axis == "pairs":
                # Five-digit pair counts would run into each other: 8k, 16k, ...
                ax.xaxis.set_major_locator(MaxNLocator(5))
                ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    handles, labels = [], []
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="outside lower center", ncols=max(1, len(labels)))
    if title:
        figure.suptitle(title)
    return figure


def write_plot(runs: list[Run], output: Path, **options) -> Path:
    figure = plot_runs(runs, **options)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    return output
