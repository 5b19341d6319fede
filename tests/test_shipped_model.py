"""The shipped weights: they load by default and their refinement pays, measured on real
eval-dev pairs with the HPatches corner error (refinement on vs off, same weights)."""

from __future__ import annotations

import numpy as np
import pytest
from fixture_data import EVAL_DEV_MANIFEST, MANIFEST

from coarse_loftr.inference import Matcher, estimate_homography
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
