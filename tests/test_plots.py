"""Training curves from synthetic histories: the figure's lines carry the runs' data and
labels, and `coarse-loftr plot-training` writes the PNG or fails with one line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from coarse_loftr.commands import main
from coarse_loftr.training.plots import Run, load_history, plot_runs, smooth


def synthetic_history(decay: float, distill: bool, seed: int) -> list[dict]:
    """A run of 60 steps of 8 pairs with validation every 10 steps."""
    rng = np.random.default_rng(seed)
    records = []
    for step in range(1, 61):
        pairs = step * 8
        supervised = 3.0 * np.exp(-pairs / decay) + 0.5 + rng.normal(0, 0.05)
        record = {
            "pairs": pairs,
            "wall_seconds": step * 2.0,
            "train_coarse": supervised * 0.7,
            "train_fine": supervised * 0.3,
            "train_supervised": supervised,
        }
        if distill:
            record["train_distill"] = 0.1 * supervised
            record["train_loss"] = 0.3 * supervised + 0.7 * 10 * record["train_distill"]
        else:
            record["train_loss"] = supervised
        if step % 10 == 0:
            record.update(
                val_median_error_px=4.0 * np.exp(-pairs / decay) + 0.8,
                val_precision_1px=0.6 - 0.5 * np.exp(-pairs / decay),
                val_precision_3px=0.9 - 0.5 * np.exp(-pairs / decay),
                val_coarse_recall=0.8 - 0.6 * np.exp(-pairs / decay),
                val_matches_per_pair=100.0 + pairs / 10,
            )
        records.append(record)
    return records


def test_smooth_is_a_trailing_mean():
    values = np.array([0.0, 2.0, 4.0, 6.0, 8.0])
    assert np.allclose(smooth(values, 2), [0, 1, 3, 5, 7])
    assert np.allclose(smooth(values, 10), np.cumsum(values) / np.arange(1, 6))
    assert np.allclose(smooth(values, 1), values)


def test_figure_holds_every_run_with_its_label():
    runs = [
        Run("student, with teacher", synthetic_history(150, True, 0)),
        Run("student, no teacher", synthetic_history(250, False, 1)),
    ]
    figure = plot_runs(runs, smoothing=5)
    by_title = {ax.get_title(): ax for ax in figure.axes}
    val_ax = by_title["val median error (px)"]
    labelled = {line.get_label(): line for line in val_ax.get_lines()}
    assert set(labelled) == {"student, with teacher", "student, no teacher"}
    line = labelled["student, no teacher"]
    assert list(line.get_xdata()) == [80, 160, 240, 320, 400, 480]
    assert np.allclose(
        line.get_ydata(), [r["val_median_error_px"] for r in runs[1].history if "val_median_error_px" in r]
    )
    # Loss panels: a faint raw curve and the smoothed one per run.
    loss_ax = by_title["supervised loss"]
    smoothed = next(ln for ln in loss_ax.get_lines() if ln.get_label() == "student, with teacher")
    raw = np.array([r["train_supervised"] for r in runs[0].history])
    assert np.allclose(smoothed.get_ydata(), smooth(raw, 5))
    assert len(loss_ax.get_lines()) == 4
    # Only the distilled run has a distillation term.
    distill_labels = [ln.get_label() for ln in by_title["distillation loss"].get_lines()]
    assert "student, no teacher" not in distill_labels and "student, with teacher" in distill_labels
    legend_labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend_labels == ["student, with teacher", "student, no teacher"]


def test_hours_axis_and_bad_options():
    history = synthetic_history(150, False, 0)
    figure = plot_runs([Run("a", history)], x_axis="hours")
    ax = next(a for a in figure.axes if a.get_title() == "val coarse recall")
    assert ax.get_lines()[0].get_xdata()[0] == pytest.approx(20.0 / 3600)
    with pytest.raises(ValueError):
        plot_runs([Run("a", history)], x_axis="epochs")
    with pytest.raises(ValueError):
        plot_runs([])


def test_plot_training_command(tmp_path, capsys):
    for name, distill in (("with_teacher", True), ("no_teacher", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.json").write_text(json.dumps(synthetic_history(200, distill, 3)))
    output = tmp_path / "out" / "curves.png"
    code = main(
        [
            "plot-training",
            str(tmp_path / "with_teacher"),
            str(tmp_path / "no_teacher"),
            "--labels",
            "student, with teacher",
            "student, no teacher",
            "-o",
            str(output),
            "--title",
            "distillation",
        ]
    )
    assert code == 0 and output.is_file()
    image = cv2.imread(str(output))
    assert image.shape == (800, 2000, 3)
    # Both runs' colours (matplotlib C0 blue, C1 orange, as BGR) are drawn.
    for bgr in ((180, 119, 31), (14, 127, 255)):
        assert (np.abs(image.astype(int) - bgr).sum(axis=2) < 30).sum() > 500
    assert load_history(tmp_path / "no_teacher")[0]["pairs"] == 8

    assert main(["plot-training", str(tmp_path / "missing")]) == 2
    assert "no history.json" in capsys.readouterr().err
    assert main(["plot-training", str(tmp_path / "no_teacher"), "--labels", "a", "b"]) == 2
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "history.json").write_text("[{")
    assert main(["plot-training", str(tmp_path / "broken")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
