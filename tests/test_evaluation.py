"""`coarse-loftr eval`: metrics against hand-computed values, the SIFT peer on real
eval-dev pairs, and the whole command on a tiny manifest made here."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixture_data import EVAL_DEV_MANIFEST, MANIFEST, PAIRS

from coarse_loftr.commands import main
from coarse_loftr.commands.evaluate import parse_compare, parse_ransac
from coarse_loftr.training.evaluation import (
    BREAKDOWN_KEYS,
    ManifestError,
    OpenCVFeatures,
    corner_error,
    cumulative_curve,
    error_auc,
    evaluate,
    image_corners,
    load_manifest,
)
from coarse_loftr.training.evaluation.runner import Fit, PairRecord, finish

# --- metrics --------------------------------------------------------------------------


def test_auc_matches_hand_computed_areas():
    # Curve through (0,0), (1,.25), (2,.5), flat afterwards (two failures never count).
    # Up to 3: .125 + .375 + 1 * .5 = 1.0 -> 1/3; up to 5: .125 + .375 + 3 * .5 = 2.0 -> .4.
    aucs = error_auc([2.0, math.inf, 1.0, math.inf], (3.0, 5.0))
    assert aucs[3.0] == pytest.approx(1.0 / 3.0)
    assert aucs[5.0] == pytest.approx(0.4)
    # One pair at 0.5 px: (0,0) -> (.5,1) -> (1,1): area .25 + .5 = .75.
    assert error_auc([0.5], (1.0,))[1.0] == pytest.approx(0.75)
    # An error equal to the threshold is not below it (as in the SuperGlue code).
    assert error_auc([1.0], (1.0,))[1.0] == pytest.approx(0.0)
    assert error_auc([0.0, 0.0], (3.0,))[3.0] == pytest.approx(1.0)
    assert error_auc([math.inf] * 3, (3.0, 10.0)) == {3.0: 0.0, 10.0: 0.0}


def test_auc_refuses_nan_and_empty():
    with pytest.raises(ValueError):
        error_auc([1.0, float("nan")])
    with pytest.raises(ValueError):
        error_auc([])


def test_cumulative_curve_counts_errors_at_or_below_x():
    curve = cumulative_curve([0.5, 2.0, math.inf, 2.0], np.array([0.0, 0.5, 1.9, 2.0, 10.0]))
    np.testing.assert_allclose(curve, [0.0, 0.25, 0.25, 0.75, 0.75])


def test_corner_error_is_zero_for_the_true_homography_and_inf_without_one():
    truth = np.array([[0.9, -0.1, 30.0], [0.1, 0.8, 5.0], [1e-4, -2e-4, 1.0]])
    assert corner_error(truth, truth, (640, 480)) == pytest.approx(0.0, abs=1e-9)
    assert corner_error(truth * 3.7, truth, (640, 480)) == pytest.approx(0.0, abs=1e-9)  # scale-free
    assert corner_error(None, truth, (640, 480)) == math.inf


def test_corner_error_uses_corner_pixel_centres():
    np.testing.assert_array_equal(image_corners(3, 2), [[0, 0], [2, 0], [2, 1], [0, 1]])
    # x2 zoom against identity on a 3x2 image: corners move by 0, 2, sqrt(5), 1 px.
    zoom = np.diag([2.0, 2.0, 1.0])
    assert corner_error(zoom, np.eye(3), (3, 2)) == pytest.approx((3 + math.sqrt(5)) / 4)
    shift = np.array([[1.0, 0, 3], [0, 1, 4], [0, 0, 1]])
    assert corner_error(shift, np.eye(3), (640, 480)) == pytest.approx(5.0)
    # A corner sent to infinity (w = 0 at (0, 0)) is an infinite error, not a NaN.
    degenerate = np.array([[1.0, 0, 0], [0, 1, 0], [1.0, 0, 0]])
    assert corner_error(degenerate, np.eye(3), (640, 480)) == math.inf


def test_best_threshold_is_picked_by_auc5_and_reported():
    # Threshold 3 solves both pairs well, threshold 1 fails one of them.
    records = [
        PairRecord(
            "p1", {"difficulty": "easy"}, 100, 0.01, {1.0: Fit(0.5, 80, 0.001), 3.0: Fit(0.4, 90, 0.001)}
        ),
        PairRecord(
            "p2", {"difficulty": "hard"}, 50, 0.01, {1.0: Fit(math.inf, 0, 0.001), 3.0: Fit(2.0, 40, 0.001)}
        ),
    ]
    best = finish("m", records, [1.0, 3.0])
    assert best.threshold_px == 3.0
    assert best.overall.failures == 0 and best.overall.median_error == pytest.approx(1.2)
    assert best.overall.inlier_ratio == pytest.approx((0.9 + 0.8) / 2)
    assert best.by_threshold[1.0].failures == 1
    assert set(best.breakdown["difficulty"]) == {"easy", "hard"}
    assert finish("m", records, [1.0, 3.0], pick_best=False).threshold_px == 1.0


# --- options --------------------------------------------------------------------------


def test_ransac_option_forms():
    assert parse_ransac("3").thresholds == (3.0,) and not parse_ransac("3").best
    choice = parse_ransac("best:1,3,5,8")
    assert choice.thresholds == (1.0, 3.0, 5.0, 8.0) and choice.best
    for bad in ("", "best:", "0", "-1,3", "a,b", "3,3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ransac(bad)


def test_compare_option_forms(tmp_path):
    assert parse_compare("runs/x/model.onnx:teacher") == (Path("runs/x/model.onnx"), "teacher")
    assert parse_compare("model.onnx") == (Path("model.onnx"), "model")
    odd = tmp_path / "a:b.onnx"
    odd.write_bytes(b"")
    assert parse_compare(str(odd)) == (odd, "a:b")


# --- real pairs -------------------------------------------------------------------------


@pytest.mark.shared_data
def test_eval_dev_manifest_breakdown_labels():
    pairs = load_manifest(EVAL_DEV_MANIFEST)
    assert len(pairs) == 124
    assert {p.labels["group"] for p in pairs} == {"generated", "real_gt", "package_gt"}
    assert {p.labels["difficulty"] for p in pairs} == {"easy", "medium", "hard"}
    assert all(p.homography.shape == (3, 3) for p in pairs)
    assert len(load_manifest(EVAL_DEV_MANIFEST, limit=3)) == 3


def test_sift_peer_is_accurate_on_real_eval_pairs():
    pairs = [p for p in load_manifest(MANIFEST) if p.id in ("0002", "0041", "0121")]
    (result,) = evaluate(pairs, [OpenCVFeatures("sift")], [3.0])
    errors = dict(zip((r.pair_id for r in result.records), result.errors()))
    assert errors["0002"] < 1.0 and errors["0041"] < 1.0  # generated: exact ground truth
    assert errors["0121"] < 5.0  # graffiti 1 -> 3, real viewpoint change
    assert result.overall.inlier_ratio > 0.5 and result.overall.failures == 0


def test_manifest_errors_are_clear(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"pairs": [{"id": "x", "a": "a.jpg", "b": "b.jpg", "H_a_to_b": [[1, 0], [0, 1]]}]})
    )
    with pytest.raises(ManifestError, match="pair x: H_a_to_b"):
        load_manifest(bad)
    bad.write_text(
        json.dumps({"pairs": [{"id": "y", "a": "a.jpg", "b": "b.jpg", "H_a_to_b": np.eye(3).tolist()}]})
    )
    with pytest.raises(ManifestError, match="pair y: image not found"):
        load_manifest(bad)


# --- the command --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> Path:
    """Two pairs warped from one photo by known homographies (b = a warped by H)."""
    folder = tmp_path_factory.mktemp("tiny_eval")
    photo = cv2.imread(str(PAIRS / "0002_a.jpg"), cv2.IMREAD_COLOR)
    image_a = np.ascontiguousarray(photo[100:340, 200:520])  # 320x240
    cv2.imwrite(str(folder / "a.png"), image_a)
    homographies = {
        "easy": np.array([[1.02, 0.03, 6.0], [-0.02, 0.99, -4.0], [1e-5, 2e-5, 1.0]]),
        "hard": np.array([[0.85, -0.30, 60.0], [0.28, 0.88, -20.0], [2e-4, -1e-4, 1.0]]),
    }
    entries = []
    for index, (difficulty, matrix) in enumerate(homographies.items()):
        image_b = cv2.warpPerspective(image_a, matrix, (320, 240), flags=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / f"b{index}.png"), image_b)
        entries.append(
            {
                "id": f"t{index}",
                "a": "a.png",
                "b": f"b{index}.png",
                "H_a_to_b": matrix.tolist(),
                "kind": "synthetic",
                "difficulty": difficulty,
                "group": f"g{index}",
            }
        )
    path = folder / "manifest.json"
    path.write_text(json.dumps({"pairs": entries}))
    return path


def test_command_writes_table_plot_and_json(tiny_manifest, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            str(tiny_manifest),
            "--methods",
            "sift,orb",
            "--out",
            str(out),
            "--ransac-threshold",
            "best:1,3",
            "--json",
        ]
    )
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert json.loads((out / "results.json").read_text()) == figures
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(figures["methods"]) == {"sift", "orb"}
    assert figures["ransac"]["candidate_thresholds_px"] == [1.0, 3.0]
    for method in figures["methods"].values():
        assert method["ransac_threshold_px"] in (1.0, 3.0)
        assert set(method["overall"]["auc"]) == {"3", "5", "10"}
        assert set(method["breakdown"]) == set(BREAKDOWN_KEYS)
        assert set(method["breakdown"]["difficulty"]) == {"easy", "hard"}
        assert set(method["breakdown"]["group"]) == {"g0", "g1"}
        assert set(method["breakdown"]["kind"]) == {"synthetic"}
        assert set(method["by_ransac_threshold"]) == {"1", "3"}
        assert method["overall"]["pairs"] == 2
    # b is an exact warp of a: SIFT must recover it to well under a pixel.
    per_pair = json.loads((out / "pairs.json").read_text())
    assert all(row["error_px"] is not None and row["error_px"] < 1.0 for row in per_pair["sift"])
    table = (out / "results.md").read_text()
    for heading in (
        "## Overall",
        "## By difficulty",
        "## By kind",
        "## By group",
        "## Every RANSAC threshold",
        "AUC@3px",
        "(0,0), (w-1,0), (w-1,h-1), (0,h-1)",
    ):
        assert heading in table


def test_command_rejects_bad_input_with_one_line(tiny_manifest, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert main(["eval", str(tiny_manifest), "--methods", "surf", "--out", str(tmp_path)]) == 2
    assert "unknown method(s) surf" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                str(tiny_manifest),
                "--methods",
                "sift",
                "--compare",
                str(tmp_path / "no.onnx"),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tiny_manifest), "--ransac-threshold", "best:0,3"])
    assert exit_info.value.code == 2


def test_command_runs_our_matcher_with_refinement_ablation_and_rotation_search(
    tiny_manifest, tmp_path, capsys, random_student_onnx
):
    # A random-initialised model: only the plumbing is checked, never its accuracy.
    out = tmp_path / "ours"
    code = main(
        [
            "eval",
            str(tiny_manifest),
            "--weights",
            str(random_student_onnx),
            "--methods",
            "ours",
            "--refine-ablation",
            "--rotations",
            "--compare",
            f"{random_student_onnx}:again",
            "--out",
            str(out),
            "--json",
            "--limit",
            "1",
        ]
    )
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert list(figures["methods"]) == ["ours", "ours (no refine)", "ours + rotation search", "again"]
    for method in figures["methods"].values():
        assert method["overall"]["pairs"] == 1 and method["overall"]["match_ms"] > 0
    assert "## Refinement on vs off (same weights)" in (out / "results.md").read_text()


def test_command_exports_a_published_format_checkpoint_on_the_fly(tiny_manifest, tmp_path, capsys):
    # A random Coarse_LoFTR_TRT-shaped model saved as the published training files are:
    # the architecture is recognised from the tensors (compatibility preset).
    import torch

    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.model import CoarseLoFTR

    torch.manual_seed(0)
    model = CoarseLoFTR(get_preset("coarse_loftr_trt"))
    checkpoint = tmp_path / "LoFTR_teacher.pt"
    torch.save(
        {
            "epoch": 0,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": {},
            "scaler_state_dict": {},
        },
        checkpoint,
    )
    out = tmp_path / "published"
    code = main(
        [
            "eval",
            str(tiny_manifest),
            "--methods",
            "",
            "--compare",
            f"{checkpoint}:trt",
            "--size",
            "320x240",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert list(figures["methods"]) == ["trt"]
    assert figures["methods"]["trt"]["overall"]["pairs"] == 2
    assert (out / "curve.png").is_file()
