"""The pictures: `/match`'s overlay and warp in the JSON of one request (`include=`), the
drawing style, canvases bounded whatever the aspect ratio, and the stream's homography,
outline and toggles (real app, random student)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from api_helpers import decode, jpeg, pair_bytes, png
from fastapi.testclient import TestClient
from fixture_data import clip_frames

from coarse_loftr.api import ServiceSettings, create_app
from coarse_loftr.api.websocket import MIN_INLIERS
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


def stream_result(ws) -> tuple[dict, np.ndarray]:
    while True:
        message = json.loads(ws.receive_text())
        assert message["type"] != "error", message
        if message["type"] == "result":
            return message, decode(ws.receive_bytes())


def test_stream_result_has_the_homography_and_the_overlay_its_outline(client):
    frame = jpeg(clip_frames(1)[0])
    with client.websocket_connect("/ws/stream") as ws:
        ready = json.loads(ws.receive_text())
        assert (ready["lines"], ready["points"], ready["outline"]) == (True, True, True)
        ws.send_text(json.dumps({"type": "settings", "threshold": 0.0}))
        json.loads(ws.receive_text())
        ws.send_bytes(frame)  # the reference, matched with itself
        result, overlay = stream_result(ws)
        assert result["num_inliers"] >= MIN_INLIERS and result["num_inliers"] <= result["num_matches"]
        # The same frame twice: the homography is the identity, the outline is drawn.
        corners = np.array([[0, 0, 1], [383, 0, 1], [383, 287, 1], [0, 287, 1]], float)
        mapped = corners @ np.array(result["homography"]).T
        assert np.abs(mapped[:, :2] / mapped[:, 2:] - corners[:, :2]).max() < 3  # pixels
        assert overlay.shape == (288, 768, 3)
        # Toggles: the outline alone, then nothing: they differ on the frame's border only.
        views = []
        for outline in (True, False):
            view = {"outline": outline, "lines": False, "points": False}
            ws.send_text(json.dumps({"type": "settings", **view}))
            assert json.loads(ws.receive_text())["outline"] is outline
            ws.send_bytes(frame)
            views.append(stream_result(ws)[1].astype(int))
        changed = np.abs(views[0] - views[1]).sum(axis=2) > 150
        changed[-40:, :384] = False  # the caption (its FPS changes)
        assert changed[:, : 384 - 8].sum() == 0  # (a thick outline on the frame's edge spills over)
        border = np.zeros((288, 384), bool)
        border[:8], border[-8:], border[:, :8], border[:, -8:] = True, True, True, True
        assert changed[:, 384:][border].sum() > 300 and changed[:, 384:][~border].sum() < 20
        plain = np.concatenate([clip_frames(1)[0]] * 2, axis=1).astype(int)
        assert np.abs(views[1][:200] - plain[:200]).mean() < 4  # no lines, no dots
        ws.send_text(json.dumps({"type": "settings", "lines": "yes"}))  # strict booleans
        assert json.loads(ws.receive_text())["type"] == "error"


def test_stream_reference_lost_has_no_homography(client):
    rng = np.random.default_rng(1)
    flat = jpeg(np.full((288, 384, 3), 128, np.uint8))
    noise = jpeg(rng.integers(0, 256, (288, 384, 3), dtype=np.uint8))
    with client.websocket_connect("/ws/stream") as ws:
        json.loads(ws.receive_text())
        ws.send_bytes(flat)  # a featureless reference: nothing to track
        ws.send_text(json.dumps({"type": "set_reference"}))
        result, _ = stream_result(ws)
        ws.send_bytes(noise)
        result, overlay = stream_result(ws)
        assert result["homography"] is None and result["num_inliers"] < MIN_INLIERS
        assert overlay.shape == (288, 768, 3)


def test_page_urls_are_relative_and_the_host_is_not_reflected(client):
    page = client.get("/", headers={"host": "evil.example:8000"}).text
    assert "evil.example" not in page and "http://" not in page and "https://" not in page
    assert 'href="static/style.css"' in page and 'src="static/app.js"' in page
    # Nothing inline that a Content-Security-Policy of default-src 'self' would refuse.
    assert "style=" not in page and "<script>" not in page.replace(" ", "") and "onclick" not in page
    examples = ("static/examples/sign_a.jpg", "static/examples/sign_b.jpg")
    for asset in ("static/style.css", "static/app.js", *examples):
        response = client.get(f"/{asset}")
        assert response.status_code == 200 and len(response.content) > 0
    assert len(client.get("/static/examples/sign_a.jpg").content) < 150_000
