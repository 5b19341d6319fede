"""`WS /ws/stream` against the real app: protocol, latest-frame-wins, bad input."""

from __future__ import annotations

import gc
import json

import cv2
import pytest
from api_helpers import decode, jpeg
from fastapi.testclient import TestClient
from fixture_data import clip_frames

from coarse_loftr.api import ServiceSettings, create_app
from coarse_loftr.api.websocket import StreamSession

MAX_FRAME = 200_000


@pytest.fixture(scope="module")
def client(random_student_onnx):
    settings = ServiceSettings(
        weights=random_student_onnx, ws_max_frame_bytes=MAX_FRAME, ws_max_side=384, num_threads=1
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    """The first frames of the 384x288 test clip, as a browser would send them."""
    return [jpeg(frame, 85) for frame in clip_frames(8)]


def receive_json(ws) -> dict:
    return json.loads(ws.receive_text())


def until(ws, kind: str) -> dict:
    """Messages up to the first of `kind` (result messages' overlays consumed too)."""
    for _ in range(50):
        message = receive_json(ws)
        if message["type"] == "result":
            ws.receive_bytes()
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind!r} message")


def result_of(ws) -> tuple[dict, bytes]:
    while True:
        message = receive_json(ws)
        if message["type"] == "result":
            return message, ws.receive_bytes()
        assert message["type"] != "error", message


def test_first_frame_is_the_reference_and_gets_an_overlay(client, frames):
    with client.websocket_connect("/ws/stream") as ws:
        ready = receive_json(ws)
        assert ready["type"] == "ready" and ready["model"] == "student" and ready["size"] == 384
        ws.send_text(json.dumps({"type": "settings", "threshold": 0.0}))  # a random model is unsure
        assert receive_json(ws)["threshold"] == 0.0
        ws.send_bytes(frames[0])
        assert receive_json(ws) == {"type": "reference_set", "frame_id": 1}
        result = receive_json(ws)
        assert result["type"] == "result" and result["frame_id"] == 1 and result["reference_id"] == 1
        assert result["num_matches"] > 0 and result["inference_ms"] > 0
        assert result["frames_dropped"] == 0
        overlay = decode(ws.receive_bytes())
        assert overlay.shape == (288, 768, 3)  # reference | frame

        ws.send_bytes(frames[5])
        second, _ = result_of(ws)
        assert second["frame_id"] == 2 and second["reference_id"] == 1
        assert second["server_fps"] > 0


def test_set_and_clear_reference(client, frames):
    with client.websocket_connect("/ws/stream") as ws:
        receive_json(ws)
        ws.send_text(json.dumps({"type": "set_reference"}))  # before any frame: the next one
        assert receive_json(ws) == {"type": "reference_set", "frame_id": None}
        for frame in frames[:3]:
            ws.send_bytes(frame)
            result, _ = result_of(ws)
        assert result["reference_id"] == 1
        ws.send_text(json.dumps({"type": "set_reference"}))
        assert receive_json(ws) == {"type": "reference_set", "frame_id": 3}
        ws.send_bytes(frames[3])
        assert result_of(ws)[0]["reference_id"] == 3
        ws.send_text(json.dumps({"type": "clear_reference"}))
        assert receive_json(ws) == {"type": "reference_cleared"}
        ws.send_bytes(frames[4])
        assert receive_json(ws) == {"type": "reference_set", "frame_id": 5}
        assert result_of(ws)[0]["reference_id"] == 5


def test_pause_resume_and_settings(client, frames):
    with client.websocket_connect("/ws/stream") as ws:
        receive_json(ws)
        ws.send_text(json.dumps({"type": "settings", "threshold": 0.0, "max_matches": 9, "size": 192}))
        assert receive_json(ws) == {
            "type": "settings",
            "threshold": 0.0,
            "max_matches": 9,
            "size": 192,
            **{"lines": True, "points": True, "outline": True},  # the overlay's toggles
        }
        ws.send_bytes(frames[0])
        result, overlay = result_of(ws)
        assert result["num_matches"] == 9
        assert decode(overlay).shape == (144, 384, 3)
        ws.send_text(json.dumps({"type": "pause"}))
        assert receive_json(ws) == {"type": "paused"}
        ws.send_bytes(frames[1])
        assert receive_json(ws) == {"type": "skipped", "frame_id": 2, "reason": "paused"}
        ws.send_text(json.dumps({"type": "resume"}))
        assert receive_json(ws) == {"type": "resumed"}
        ws.send_bytes(frames[2])
        assert result_of(ws)[0]["frame_id"] == 3


def test_latest_frame_wins(client, frames):
    with client.websocket_connect("/ws/stream") as ws:
        receive_json(ws)
        for frame in frames:  # all at once: later frames replace waiting ones
            ws.send_bytes(frame)
        results = []
        while not results or results[-1]["frame_id"] != len(frames):
            results.append(result_of(ws)[0])
        ids = [r["frame_id"] for r in results]
        assert ids == sorted(ids) and ids[0] == 1
        # Every frame was either processed or counted as dropped.
        assert len(results) + results[-1]["frames_dropped"] == len(frames)
        assert results[-1]["frames_dropped"] >= 1


def test_pipelined_client_gets_every_overlay_in_order(client, frames):
    """A client that sends the next frame as soon as a result arrives (as the page does):
    the overlay of frame N comes after N's result and before N+1's, one per result."""
    with client.websocket_connect("/ws/stream") as ws:
        receive_json(ws)
        ws.send_text(json.dumps({"type": "settings", "threshold": 0.0}))
        receive_json(ws)
        ws.send_bytes(frames[0])
        events, sent = [], 1
        while len(events) < 2 * len(frames):
            message = ws.receive()
            if message.get("bytes") is not None:
                assert decode(message["bytes"]).shape == (288, 768, 3)
                events.append("overlay")
                continue
            data = json.loads(message["text"])
            assert data["type"] != "error", data
            if data["type"] == "result":
                events.append(data["frame_id"])
                if sent < len(frames):
                    ws.send_bytes(frames[sent])
                    sent += 1
        expected = [e for i in range(1, len(frames) + 1) for e in (i, "overlay")]
        assert events == expected


@pytest.mark.parametrize(
    "text,code",
    [
        ("{not json", "invalid_json"),
        ('"a string"', "unknown_message"),
        ('{"type": "explode"}', "unknown_message"),
        ('{"no_type": 1}', "unknown_message"),
        ('{"type": "settings", "threshold": 7}', "invalid_message"),
        ('{"type": "settings", "size": "big"}', "invalid_message"),
        ('{"type": "pause", "extra": true}', "invalid_message"),
    ],
)
def test_bad_control_messages(client, frames, text, code):
    with client.websocket_connect("/ws/stream") as ws:
        receive_json(ws)
        ws.send_text(text)
        error = receive_json(ws)
        assert error["type"] == "error" and error["code"] == code and error["detail"]
        ws.send_bytes(frames[0])  # the connection still works
        assert result_of(ws)[0]["frame_id"] == 1


@pytest.mark.parametrize(
    "data,code",
    [
        (b"this is not an image", "unsupported_image"),
        (b"", "empty_image"),
        (b"\xff" * (MAX_FRAME + 1), "frame_too_large"),
    ],
)
def test_bad_frames(client, frames, data, code):
    with client.websocket_connect("/ws/stream") as ws:
        receive_json(ws)
        ws.send_bytes(data)
        error = receive_json(ws)
        assert error == {"type": "error", "code": code, "detail": error["detail"], "frame_id": 1}
        ws.send_bytes(frames[0])
        result, _ = result_of(ws)
        assert result["frame_id"] == 2 and result["reference_id"] == 2


def test_truncated_frame(client, frames):
    with client.websocket_connect("/ws/stream") as ws:
        receive_json(ws)
        ws.send_bytes(frames[0][: len(frames[0]) // 2])
        assert receive_json(ws)["code"] == "invalid_image"
        ws.send_bytes(frames[0])
        assert result_of(ws)[0]["frame_id"] == 2


def test_disconnect_frees_the_session(client, frames):
    for _ in range(3):
        with client.websocket_connect("/ws/stream") as ws:
            receive_json(ws)
            ws.send_bytes(frames[0])
            ws.send_bytes(frames[1])  # leave work behind
    assert client.get("/health").status_code == 200
    for _ in range(20):
        gc.collect()
        if not any(isinstance(o, StreamSession) for o in gc.get_objects()):
            break
        client.get("/health")  # let the app's loop run the cancelled tasks
    assert not any(isinstance(o, StreamSession) for o in gc.get_objects())


def test_independent_references(client, frames):
    with client.websocket_connect("/ws/stream") as one, client.websocket_connect("/ws/stream") as two:
        receive_json(one), receive_json(two)
        one.send_bytes(frames[0])
        two.send_bytes(frames[6])
        _, overlay_one = result_of(one)
        _, overlay_two = result_of(two)
        left_one, left_two = decode(overlay_one)[:, :384], decode(overlay_two)[:, :384]
        assert cv2.absdiff(left_one, left_two).mean() > 1.0


def test_a_streams_reference_is_encoded_once(client):
    """The live matcher keeps each stream's reference half of the model: one miss per
    reference, a hit for every later frame, two streams side by side included."""
    # Another JPEG quality: references that no other test has sent (the cache knows them
    # by content).
    frames = [jpeg(frame, 60) for frame in clip_frames(8)]
    live = client.app.state.service.engine.live_model
    assert live.backend.reuses_image0 and live.image0_cache == ServiceSettings().stream_references
    misses, hits = live.image0_misses, live.image0_hits
    with client.websocket_connect("/ws/stream") as one, client.websocket_connect("/ws/stream") as two:
        receive_json(one), receive_json(two)
        for index in range(3):
            one.send_bytes(frames[index])
            result_of(one)
            two.send_bytes(frames[7 - index])
            result_of(two)
    assert (live.image0_misses - misses, live.image0_hits - hits) == (2, 4)
