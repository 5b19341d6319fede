"""The HTTP API against the real app (random-initialised student on ONNX Runtime)."""

from __future__ import annotations

import base64
import threading

import cv2
import numpy as np
import pytest
from api_helpers import decode, jpeg, pair_bytes, png, png_bomb
from fastapi.testclient import TestClient

from coarse_loftr.api import ServiceSettings, create_app

MAX_BYTES = 400_000


@pytest.fixture(scope="module")
def client(random_student_onnx):
    settings = ServiceSettings(
        weights=random_student_onnx,
        max_upload_bytes=MAX_BYTES,
        max_image_bytes=15_000_000,
        memory_budget_bytes=200_000_000,
        queue_size=1,
        num_threads=1,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def images():
    a, b = pair_bytes("0001")
    return decode(a), decode(b)


def post(client, path, a: bytes, b: bytes | None, **params):
    files = {"a": ("a.jpg", a, "image/jpeg")}
    if b is not None:
        files["b"] = ("b.jpg", b, "image/jpeg")
    return client.post(path, files=files, params=params)


def assert_error(response, status: int | tuple[int, ...], code: str | None = None) -> dict:
    assert response.status_code in (status if isinstance(status, tuple) else (status,)), response.text
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"} and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert body["error"] == code
    return body


def test_match_json_in_each_images_pixels(client, images):
    a, b = images
    small_b = cv2.resize(b, (400, 300), interpolation=cv2.INTER_AREA)
    response = post(client, "/match", jpeg(a), jpeg(small_b), threshold=0.0, max_matches=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image_size0"] == {"width": 640, "height": 480}
    assert body["image_size1"] == {"width": 400, "height": 300}
    assert 0 < body["num_matches"] <= 300
    assert (
        body["num_matches"] == len(body["keypoints0"]) == len(body["keypoints1"]) == len(body["confidence"])
    )
    k0, k1 = np.array(body["keypoints0"]), np.array(body["keypoints1"])
    assert k0.min() >= -0.5 and (k0 <= [639.5, 479.5]).all()
    assert k1.min() >= -0.5 and (k1 <= [399.5, 299.5]).all()
    # Cells of b's model input span a smaller image: its points lie on a coarser lattice.
    assert k1[:, 0].max() > 200 and k0[:, 0].max() > 320
    confidence = np.array(body["confidence"])
    assert (np.diff(confidence) <= 1e-6).all(), "most confident first"
    assert body["homography"] is None and body["inliers"] is None
    assert body["model"] == "student" and body["backend"] == "onnxruntime"
    timings = body["timings_ms"]
    assert all(timings[k] > 0 for k in ("decode", "inference", "postprocess", "total"))
    assert timings["total"] >= timings["decode"] + timings["inference"]


def test_match_self_gives_identity_homography(client, images):
    # Even a random model maps identical features onto each other, cell for cell (its
    # untrained refinement heads would only add noise, so they are switched off).
    data = jpeg(images[0])
    body = post(client, "/match", data, data, threshold=0.0, refine=False, ransac="homography").json()
    assert body["num_matches"] >= 50
    assert len(body["inliers"]) == body["num_matches"] and body["num_inliers"] >= 0.5 * body["num_matches"]
    np.testing.assert_allclose(np.array(body["homography"]) / body["homography"][2][2], np.eye(3), atol=0.05)
    fundamental = post(client, "/match", data, data, threshold=0.0, refine=False, ransac="fundamental").json()
    assert (
        fundamental["num_inliers"] is not None and len(fundamental["inliers"]) == fundamental["num_matches"]
    )


def test_threshold_and_max_matches_options(client, images):
    a, b = (jpeg(image) for image in images)
    loose = post(client, "/match", a, b, threshold=0.0).json()
    capped = post(client, "/match", a, b, threshold=0.0, max_matches=7).json()
    strict = post(client, "/match", a, b, threshold=1.0).json()
    assert capped["num_matches"] == 7 and loose["num_matches"] > 7
    assert capped["confidence"] == loose["confidence"][:7]
    assert strict["num_matches"] <= loose["num_matches"]


@pytest.mark.parametrize("how", ["query", "accept"])
def test_match_png_overlay(client, images, how):
    a, b = images
    small_b = cv2.resize(b, (320, 240))
    headers = {"Accept": "image/png"} if how == "accept" else {}
    params = {"format": "png"} if how == "query" else {}
    response = client.post(
        "/match",
        files={"a": ("a.jpg", jpeg(a)), "b": ("b.png", png(small_b))},
        params={"threshold": 0.0, **params},
        headers=headers,
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    overlay = decode(response.content)
    # b is scaled to a's height: 640 + 320 * 2 wide.
    assert overlay.shape == (480, 1280, 3)


def test_register(client, images):
    data = jpeg(images[0])
    body = post(client, "/register", data, data, threshold=0.0, refine=False).json()
    assert body["num_inliers"] >= 0.5 * body["num_matches"] > 0
    overlay = decode(base64.b64decode(body["overlay_png"]))
    assert overlay.shape == (480, 640, 3)
    # Registered onto itself, the blend is the image itself.
    assert np.abs(overlay.astype(int) - decode(data).astype(int)).mean() < 8
    response = post(client, "/register", data, data, threshold=0.0, refine=False, format="png")
    assert response.headers["content-type"] == "image/png"
    assert decode(response.content).shape == (480, 640, 3)


def test_register_without_homography_png_is_422(client, images):
    a, b = (jpeg(image) for image in images)
    response = post(client, "/register", a, b, threshold=1.0, format="png")
    if response.status_code == 200:  # a random model might still find 4 matches at 1.0
        pytest.skip("the random model found a homography at threshold 1.0")
    assert_error(response, 422, "no_homography")


def test_health_info_docs(client):
    health = client.get("/health").json()
    assert set(health) == {"status", "backend"} and health["status"] == "ok"
    assert health["backend"].startswith("onnxruntime")
    info = client.get("/info").json()
    assert info["model"] == "student" and info["input_size"] == {"width": 320, "height": 240}
    assert info["max_upload_bytes"] == MAX_BYTES and info["version"]
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    match = schema["paths"]["/match"]["post"]
    assert {"200", "413", "415", "422", "503"} <= set(match["responses"])
    assert match["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorResponse"
    )
    assert "image/png" in match["responses"]["200"]["content"]
    assert {"MatchResponse", "RegisterResponse", "HealthResponse", "InfoResponse", "ErrorResponse"} <= set(
        schema["components"]["schemas"]
    )
    page = client.get("/")
    assert page.status_code == 200 and 'id="overlay"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_accepts_16bit_gray_and_rgba(client, images):
    a = images[0]
    gray = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    deep = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    rgba = cv2.cvtColor(a, cv2.COLOR_BGR2BGRA)
    reference = post(client, "/match", png(a), png(a), threshold=0.0).json()["num_matches"]
    for image in (gray, deep, rgba):
        response = client.post(
            "/match", files={"a": ("a.png", png(image)), "b": ("b.png", png(a))}, params={"threshold": 0.0}
        )
        assert response.status_code == 200, response.text
        # The model sees the same gray picture every time.
        assert abs(response.json()["num_matches"] - reference) <= 0.1 * reference


def test_missing_part(client, images):
    assert_error(post(client, "/match", jpeg(images[0]), None), 422, "invalid_request")
    assert_error(client.post("/match"), 422)


@pytest.mark.parametrize(
    "data,status,code",
    [
        (b"definitely not an image" * 10, 415, "unsupported_image"),
        (b"", 422, "empty_image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, (415, 422), None),  # a JPEG start, then garbage
        (b"GIF89a" + b"\x00" * 3, (415, 422), None),  # header cut short
    ],
)
def test_bad_image_bytes(client, images, data, status, code):
    body = assert_error(post(client, "/match", data, jpeg(images[1])), status, code)
    assert "'a'" in body["detail"]


def test_truncated_jpeg_and_png(client, images):
    whole_jpeg, whole_png = jpeg(images[0]), png(images[0])
    assert_error(
        post(client, "/match", jpeg(images[1]), whole_jpeg[: len(whole_jpeg) // 2]), 422, "invalid_image"
    )
    assert_error(
        post(client, "/match", jpeg(images[1]), whole_png[: len(whole_png) // 2]), 422, "invalid_image"
    )


def test_byte_limit(client, images):
    noisy = np.random.default_rng(0).integers(0, 256, (400, 400, 3), np.uint8)
    big = png(noisy)
    assert len(big) > MAX_BYTES
    body = assert_error(post(client, "/match", big, jpeg(images[1])), 413, "image_too_large")
    assert str(MAX_BYTES) in body["detail"]
    # Far over the limit: refused from Content-Length before the body is parsed.
    huge = big * 3
    assert_error(post(client, "/match", huge, huge), 413, "request_too_large")


def test_decompression_bomb_refused_before_decoding(client, images):
    bomb = png_bomb(50_000, 50_000)
    assert len(bomb) < 1024
    body = assert_error(post(client, "/match", bomb, jpeg(images[1])), 413, "image_too_large")
    assert "pixels" in body["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"threshold": 5},
        {"threshold": -0.1},
        {"threshold": "nan"},
        {"max_matches": 0},
        {"max_matches": 10**9},
        {"ransac": "affine"},
        {"ransac_threshold": 0},
        {"ransac_threshold": 1e9},
        {"refine": "maybe"},
        {"format": "gif"},
    ],
)
def test_absurd_query_values(client, images, params):
    a, b = (jpeg(image) for image in images)
    assert_error(post(client, "/match", a, b, **params), 422, "invalid_request")


def test_busy_answers_503_with_retry_after(client, images):
    """With the worker held and its one-slot queue full, the next request is refused."""
    service = client.app.state.service
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(30)

    async def submit(fn):
        return service.engine.worker.submit(fn)

    futures = [client.portal.call(submit, hold)]  # the worker blocks in this job
    assert started.wait(10)
    futures.append(client.portal.call(submit, lambda: None))  # ...and this one fills the queue
    try:
        response = post(client, "/match", jpeg(images[0]), jpeg(images[1]))
        assert_error(response, 503, "busy")
        assert int(response.headers["retry-after"]) >= 1
    finally:
        release.set()
    for future in futures:
        client.portal.call(_wait, future)
    assert post(client, "/match", jpeg(images[0]), jpeg(images[1])).status_code == 200


async def _wait(future):
    return await future


def test_unknown_route_and_method(client):
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/match"), 405, "method_not_allowed")
    assert client.get("/health").status_code == 200


def test_uploads_and_the_stream_use_their_own_models(tmp_path, random_student_onnx, random_trt_onnx):
    """A weights folder with a default (uploads) and a live model: /match answers with
    the default one, the stream with the live one, and /info names both input sizes."""
    import json

    (tmp_path / "live.onnx").write_bytes(random_student_onnx.read_bytes())
    (tmp_path / "uploads.onnx").write_bytes(random_trt_onnx.read_bytes())
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "default": "uploads",
                "live": "live",
                "models": {
                    "uploads": {"onnx": "uploads.onnx", "input_size": [640, 480]},
                    "live": {"onnx": "live.onnx", "input_size": [320, 240]},
                },
            }
        )
    )
    settings = ServiceSettings(weights=tmp_path, num_threads=1)
    with TestClient(create_app(settings)) as client:
        info = client.get("/info").json()
        assert info["input_size"] == {"width": 640, "height": 480}
        assert info["live_input_size"] == {"width": 320, "height": 240}
        assert info["model"] == "coarse_loftr_trt"
        assert "(320x240 live, 640x480 uploads)" in client.get("/").text
        with client.websocket_connect("/ws/stream") as ws:
            ready = ws.receive_json()
            assert ready["model"] == "student" and ready["input_size"] == [320, 240]
    with TestClient(
        create_app(ServiceSettings(weights=tmp_path, live_size=(640, 480), num_threads=1))
    ) as client:
        assert client.get("/info").json()["live_input_size"] == {"width": 640, "height": 480}
        service = client.app.state.service
        assert service.live_matcher is service.matcher  # one model, loaded once


def test_page_defaults_are_the_librarys(client):
    """The page's threshold fields start at the library's defaults (no numbers of its own)."""
    from coarse_loftr.inference.config import MatchConfig, RegistrationConfig

    page = client.get("/").text
    assert f'id="threshold" min="0" max="1" step="any" value="{MatchConfig.threshold}"' in page
    assert f'id="live-threshold" min="0" max="1" step="any" value="{MatchConfig.threshold}"' in page
    assert f'value="{RegistrationConfig.threshold_px}"' in page
