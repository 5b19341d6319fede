"""The shipped weights: they load by default and their refinement pays, measured on real
eval-dev pairs with the HPatches corner error (refinement on vs off, same weights)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fixture_data import EVAL_DEV_MANIFEST, MANIFEST

from coarse_loftr.inference import Matcher, estimate_homography
from coarse_loftr.inference.preprocess import unrotate_points
from coarse_loftr.inference.weights import WeightsError, resolve_weights
from coarse_loftr.training.evaluation.metrics import corner_error
from coarse_loftr.training.evaluation.pairs import load_manifest


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    try:
        resolve_weights(None, None)
    except WeightsError as error:
        pytest.fail(f"the shipped weights must be present: {error}")
    return Matcher(num_threads=1)


def test_default_matcher_is_the_shipped_model(matcher):
    assert matcher.info.name == "student"
    assert matcher.backend.name == "onnxruntime"


def test_the_live_model_is_the_live_video_size(matcher):
    """The stream's model takes 320x240 or less (the live-video setting); the default,
    for uploads, takes at least as many pixels."""
    live = Matcher(role="live", num_threads=1)
    width, height = live.input_size
    assert live.info.name == "student" and width * height <= 320 * 240
    assert width * height <= matcher.input_size[0] * matcher.input_size[1]


@pytest.mark.parametrize("role", ["default", "live"])
def test_both_roles_ship_split_graphs_that_give_the_whole_graphs_matches(role):
    """A stream against one reference (the split graphs, image0's half kept) finds what
    the whole graph finds, frame after frame, on real pairs."""
    files = resolve_weights(None, None, role)
    assert files.split is not None, f"the {role} model ships no split graphs"
    whole = Matcher(files.onnx, num_threads=1)  # no cache, no rotations: the whole graph
    stream = Matcher(role=role, num_threads=1, image0_cache=1)
    assert stream.backend.reuses_image0
    pairs = load_manifest(MANIFEST)[:2]
    reference = pairs[0].load()[0]
    frames = [image for pair in pairs for image in pair.load()]
    for frame in frames:
        expected, got = whole.match(reference, frame, refine=True), stream.match(reference, frame)
        assert len(got) == len(expected) > 50
        np.testing.assert_allclose(got.keypoints1, expected.keypoints1, atol=1e-3)
    assert (stream.image0_misses, stream.image0_hits) == (1, len(frames) - 1)


@pytest.mark.parametrize(
    ("manifest", "difficulties"),
    [
        pytest.param(MANIFEST, ("easy", "medium"), id="fixture-pairs"),
        pytest.param(EVAL_DEV_MANIFEST, ("easy",), id="eval-dev", marks=pytest.mark.shared_data),
    ],
)
def test_refinement_lowers_the_corner_error(matcher, manifest, difficulties):
    pairs = [p for p in load_manifest(manifest) if p.labels.get("difficulty") in difficulties][:12]
    assert len(pairs) >= 3
    errors = {True: [], False: []}
    for pair in pairs:
        image0, image1 = pair.load()
        for refine in (True, False):
            result = matcher.match(image0, image1, refine=refine)
            geometry = estimate_homography(result, threshold_px=3.0)
            size = result.image_size0
            errors[refine].append(corner_error(geometry.matrix, pair.homography, size))
    refined, coarse = np.median(errors[True]), np.median(errors[False])
    assert refined < 0.7 * coarse, (refined, coarse)
    assert refined < 5.0


@pytest.mark.parametrize(
    ("code", "turned_back", "to_turned"),
    [
        (cv2.ROTATE_90_CLOCKWISE, 90, lambda w, h: [[0, -1, h - 1], [1, 0, 0], [0, 0, 1]]),
        (cv2.ROTATE_180, 180, lambda w, h: [[-1, 0, w - 1], [0, -1, h - 1], [0, 0, 1]]),
        (cv2.ROTATE_90_COUNTERCLOCKWISE, 270, lambda w, h: [[0, 1, 0], [-1, 0, w - 1], [0, 0, 1]]),
    ],
)
def test_rotation_search_matches_a_turned_image(matcher, code, turned_back, to_turned):
    """Beyond the model's +-45 degrees plain matching fails; `rotations` finds the turn
    and answers keypoints in the turned image's own pixels."""
    pair = next(p for p in load_manifest(MANIFEST) if p.labels.get("difficulty") == "easy")
    image0, image1 = pair.load()
    turned = cv2.rotate(image1, code)
    truth = np.asarray(to_turned(image1.shape[1], image1.shape[0]), float) @ pair.homography
    size = (image0.shape[1], image0.shape[0])
    searched = matcher.match(image0, turned, rotations=True)
    assert searched.rotation1 == turned_back and searched.image_size1 == (turned.shape[1], turned.shape[0])
    assert corner_error(estimate_homography(searched, threshold_px=3.0).matrix, truth, size) < 3.0
    plain = matcher.match(image0, turned)
    assert plain.rotation1 == 0 and len(plain) < len(searched) / 2


def test_unrotate_points_inverts_the_turn():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (7, 11), dtype=np.uint8)
    ys, xs = np.mgrid[0:7, 0:11]
    points = np.stack([xs.ravel(), ys.ravel()], 1)
    for turns in range(4):
        turned = np.rot90(image, turns)
        th, tw = turned.shape
        turned_points = np.stack(np.meshgrid(np.arange(tw), np.arange(th)), -1).reshape(-1, 2)
        back = unrotate_points(turned_points, turns, (11, 7)).astype(int)
        np.testing.assert_array_equal(
            turned[turned_points[:, 1], turned_points[:, 0]], image[back[:, 1], back[:, 0]]
        )
        assert sorted(map(tuple, back)) == sorted(map(tuple, points))
