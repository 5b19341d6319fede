"""/match decodes a JPEG larger than the model needs at reduced scale (DCT scaling) and
answers its points in the full image's pixels: checked against the same pair matched
from a full decode, with the shipped model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from api_helpers import decode, jpeg, pair_bytes
from fastapi.testclient import TestClient

from coarse_loftr.api import ServiceSettings, create_app
from coarse_loftr.inference import Matcher, estimate_homography
from coarse_loftr.inference.io import decode_image, read_header, reduction_for
from coarse_loftr.inference.paths import WEIGHTS_DIR


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServiceSettings(weights=WEIGHTS_DIR, num_threads=2))) as client:
        yield client


def corners_through(homography: np.ndarray, width: int, height: int) -> np.ndarray:
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    return cv2.perspectiveTransform(corners[None], homography)[0]


def test_large_jpeg_is_matched_from_a_reduced_decode_in_full_pixels(client):
    a, b = (decode(data) for data in pair_bytes("0001"))
    big_a = jpeg(cv2.resize(a, (1280, 960), interpolation=cv2.INTER_CUBIC), 95)  # 2x the pixels
    input_size = client.app.state.service.matcher.input_size  # the default model's
    assert reduction_for(read_header(big_a), input_size) == 2  # decoded at 640x480

    body = client.post(
        "/match",
        files={"a": ("a.jpg", big_a), "b": ("b.jpg", jpeg(b, 95))},
        params={"ransac": "homography"},
    ).json()
    assert body["image_size0"] == {"width": 1280, "height": 960}
    points = np.array(body["keypoints0"])
    assert points[:, 0].max() > 640 and points.max() <= 1279.5  # full-resolution pixels

    # The same pair from a full decode of the big JPEG: the homographies agree.
    full = Matcher(weights=WEIGHTS_DIR).match(decode_image(big_a), decode_image(jpeg(b, 95)))
    reference = estimate_homography(full).matrix
    served = np.array(body["homography"])
    error = np.linalg.norm(corners_through(served, 1280, 960) - corners_through(reference, 1280, 960), axis=1)
    print(f"corner difference reduced vs full decode: mean {error.mean():.2f} px, max {error.max():.2f} px")
    assert error.mean() < 2.0  # of a 1280x960 image; a wrong scale or offset is far off


def test_rotation_search_answers_b_turned_and_in_its_own_pixels(client):
    """b sent a quarter turn clockwise (and at twice the size, so it decodes reduced):
    `rotations=true` reports the turn back and a homography onto the turned b."""
    a, b = (decode(data) for data in pair_bytes("0001"))
    big_b = cv2.resize(b, (1280, 960), interpolation=cv2.INTER_CUBIC)
    turned = cv2.rotate(big_b, cv2.ROTATE_90_CLOCKWISE)  # 960x1280
    files = {"a": ("a.jpg", jpeg(a, 95)), "b": ("b.jpg", jpeg(turned, 95))}
    body = client.post("/match", files=files, params={"ransac": "homography", "rotations": "true"}).json()
    assert body["rotation_b"] == 90 and body["image_size1"] == {"width": 960, "height": 1280}

    reference = estimate_homography(Matcher(weights=WEIGHTS_DIR).match(a, big_b)).matrix
    to_turned = np.array([[0, -1, 960 - 1], [1, 0, 0], [0, 0, 1]], np.float64)
    expected = corners_through(to_turned @ reference, 640, 480)
    error = np.linalg.norm(corners_through(np.array(body["homography"]), 640, 480) - expected, axis=1)
    assert error.mean() < 4.0  # pixels of the 960x1280 b; a wrong turn or mapping is far off

    plain = client.post("/match", files=files, params={"ransac": "homography"}).json()
    assert plain["rotation_b"] == 0 and plain["num_matches"] < body["num_matches"] / 2
