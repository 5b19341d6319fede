"""Failures no client can provoke on purpose, injected in the app in this process: a bug
in a route answers a fixed sentence and a request id (the details go to the log only),
and an overlay that fails to draw answers an error while the stream goes on."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from api_helpers import jpeg
from fastapi.testclient import TestClient
from fixture_data import clip_frames

from coarse_loftr.api import ServiceSettings, create_app
from coarse_loftr.api import websocket as stream_module
from coarse_loftr.api.middleware import INTERNAL_ERROR


@pytest.fixture(scope="module")
def app(random_student_onnx):
    app = create_app(ServiceSettings(weights=random_student_onnx, num_threads=1))

    async def broken() -> None:
        raise cv2.error("OpenCV(4.10.0) /io/opencv/modules/core/src/alloc.cpp:73: error: (-4) secret")

    app.add_api_route("/broken", broken)
    return app


def test_internal_error_says_nothing_of_the_internals(app, caplog):
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        response = client.get("/broken", headers={"X-Request-ID": "report-me-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": INTERNAL_ERROR,
        "request_id": "report-me-1",
    }
    assert "secret" not in response.text and "opencv" not in response.text.lower()
    assert response.headers["x-request-id"] == "report-me-1"
    assert response.headers["x-content-type-options"] == "nosniff"  # a 500 has the headers too
    logged = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert logged and logged[0].request_id == "report-me-1" and "secret" in str(logged[0].exc_info[1])


def test_overlay_failure_answers_an_error_and_the_stream_goes_on(app, monkeypatch):
    frames = [jpeg(frame, 85) for frame in clip_frames(3)]
    real = stream_module.render_overlay
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise cv2.error("could not encode")
        return real(*args, **kwargs)

    monkeypatch.setattr(stream_module, "render_overlay", fails_once)
    with TestClient(app) as client, client.websocket_connect("/ws/stream") as ws:
        assert json.loads(ws.receive_text())["type"] == "ready"
        ws.send_bytes(frames[0])
        messages = []
        while len([m for m in messages if m.get("type") in ("result", "error")]) < 2:
            messages.append(json.loads(ws.receive_text()))
        kinds = [m["type"] for m in messages]
        assert kinds[-2:] == ["result", "error"] and messages[-1]["code"] == "overlay_failed"
        assert messages[-1]["request_id"]
        ws.send_bytes(frames[1])  # the session still processes frames
        while (message := json.loads(ws.receive_text()))["type"] != "result":
            pass
        assert message["frame_id"] == 2
        overlay = cv2.imdecode(np.frombuffer(ws.receive_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert overlay is not None and overlay.ndim == 3


def test_log_lines_are_json_with_the_request_id_or_plain_text():
    from coarse_loftr.api.logs import REQUEST_ID, JsonFormatter, PlainFormatter, RequestIdFilter, log_config

    record = logging.makeLogRecord(
        {"name": "coarse_loftr.api", "levelname": "INFO", "msg": "request", "status": 413, "route": "/match"}
    )
    token = REQUEST_ID.set("abc.1")
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request" and line["request_id"] == "abc.1" and line["level"] == "info"
    assert line["status"] == 413 and line["route"] == "/match" and line["time"].endswith("+00:00")
    plain = PlainFormatter().format(record)
    assert "[abc.1] request" in plain and '"status": 413' in plain
    assert log_config("plain", "info")["formatters"]["default"]["()"] is PlainFormatter
    assert log_config("json", "info")["loggers"]["uvicorn.access"]["handlers"] == []  # ours replaces it
