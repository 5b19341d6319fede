"""The pictures of `/match`: overlay and warp in the JSON of one request (`include=`), the
drawing style, and canvases bounded whatever the aspect ratio (real app, random student)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from api_helpers import decode, jpeg, pair_bytes, png
from fastapi.testclient import TestClient

from coarse_loftr.api import ServiceSettings, create_app
from coarse_loftr.inference.drawing import MAX_CANVAS_SIDE, side_by_side_layout


@pytest.fixture(scope="module")
def client(random_student_onnx):
    settings = ServiceSettings(weights=random_student_onnx, queue_size=2, num_threads=1)
    with TestClient(create_app(settings)) as client:
        yield client


def post(client, a: bytes, b: bytes, **params):
    return client.post("/match", files={"a": ("a.jpg", a), "b": ("b.jpg", b)}, params=params)


def picture(body: dict, field: str) -> np.ndarray:
    return decode(base64.b64decode(body[field]))


def test_one_request_answers_json_overlay_and_warp(client):
    a, b = pair_bytes("0001")
    # Threshold 0: a random model is unsure; the same image twice gives an exact homography.
    body = post(client, a, a, threshold=0.0, ransac="homography", include="overlay,warp").json()
    assert body["num_matches"] > 0 and body["homography"] is not None and body["num_inliers"] > 0
    assert picture(body, "overlay_png").shape == (480, 1280, 3)
    warp = picture(body, "warp_png")
    assert warp.shape == (480, 640, 3)
    # Without the pictures the JSON is the same, minus them.
    plain = post(client, a, a, threshold=0.0, ransac="homography").json()
    assert plain["overlay_png"] is None and plain["warp_png"] is None
    assert plain["num_matches"] == body["num_matches"]
    # The overlay alone, and the warp with a homography fitted for it when ransac is off.
    only = post(client, a, b, threshold=0.0, include="warp").json()
    assert only["overlay_png"] is None and only["homography"] is None
    assert only["warp_png"] is None or picture(only, "warp_png").shape == (480, 640, 3)


def test_draw_styles_differ_and_png_format_stays(client):
    a, _ = pair_bytes("0001")
    pictures = {
        style: picture(post(client, a, a, threshold=0.0, include="overlay", draw=style).json(), "overlay_png")
        for style in ("lines", "points", "both")
    }
    assert not np.array_equal(pictures["lines"], pictures["points"])
    assert not np.array_equal(pictures["both"], pictures["lines"])
    response = post(client, a, a, threshold=0.0, format="png", draw="points")
    assert response.headers["content-type"] == "image/png"
    assert np.array_equal(decode(response.content), pictures["points"])


@pytest.mark.parametrize("params", [{"include": "overlay,thumbnail"}, {"draw": "arrows"}])
def test_unknown_picture_options_are_422(client, params):
    a, b = pair_bytes("0001")
    response = post(client, a, b, **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"


def test_extreme_aspect_ratios_draw_a_bounded_canvas(client):
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (10, 1000, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, (1000, 10, 3), dtype=np.uint8)
    response = post(client, png(wide), png(tall), format="png")
    assert response.status_code == 200
    overlay = decode(response.content)
    width, height = side_by_side_layout((1000, 10), (10, 1000)).size
    assert overlay.shape == (height, width, 3) and max(width, height) <= MAX_CANVAS_SIDE
    body = post(client, jpeg(wide), jpeg(tall), include="overlay,warp", ransac="homography").json()
    assert max(picture(body, "overlay_png").shape[:2]) <= MAX_CANVAS_SIDE
