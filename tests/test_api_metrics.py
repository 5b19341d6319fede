"""`GET /metrics` of a real server after real traffic: uploads, a 404, a stream."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from api_helpers import jpeg, pair_bytes
from fixture_data import clip_frames
from prometheus_client.parser import text_string_to_metric_families

from coarse_loftr.api import loadtest


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def stream(url: str, frames: list[bytes]) -> int:
    """Send each frame when the previous result came; count the results."""
    results = 0
    async with websockets.connect(url.replace("http", "ws", 1) + "/ws/stream", max_size=2**24) as ws:
        await ws.recv()  # ready
        for frame in frames:
            await ws.send(frame)
            while True:
                message = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(message, str) and json.loads(message)["type"] == "result":
                    results += 1
                    break
        while not isinstance(await asyncio.wait_for(ws.recv(), 30), bytes):  # the last overlay
            pass
    return results


@pytest.fixture(scope="module")
def traffic(random_student_onnx):
    """A server that answered 3 matches (one as PNG), a 404, and a 4-frame stream."""
    a, b = pair_bytes("0001")
    frames = [jpeg(frame, 85) for frame in clip_frames(4)]
    with loadtest.running_server(random_student_onnx) as (url, _):
        files = {"a": ("a.jpg", a), "b": ("b.jpg", b)}
        for params in ({}, {}, {"format": "png"}):
            assert httpx.post(f"{url}/match", files=files, params=params, timeout=60).status_code == 200
        assert httpx.get(f"{url}/nowhere/../../etc").status_code == 404
        assert asyncio.run(stream(url, frames)) == 4
        page = httpx.get(f"{url}/metrics")
        yield page, samples(page.text)


def test_metrics_is_prometheus_text(traffic):
    page, _ = traffic
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_request_latency_per_route_and_status(traffic):
    _, values = traffic
    count = "coarse_loftr_http_request_duration_seconds_count"
    assert values[(count, (("method", "POST"), ("route", "/match"), ("status", "200")))] == 3
    # Hostile paths share one label: the series stay bounded.
    assert values[(count, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert values[("coarse_loftr_http_requests_in_flight", ())] == 1  # this scrape


def test_stage_times_per_role(traffic):
    _, values = traffic
    count = "coarse_loftr_stage_seconds_count"
    assert values[(count, (("role", "default"), ("stage", "decode")))] == 3
    assert values[(count, (("role", "default"), ("stage", "inference")))] == 3
    assert values[(count, (("role", "live"), ("stage", "decode")))] == 4
    assert values[(count, (("role", "live"), ("stage", "inference")))] == 4
    assert values[(count, (("role", "live"), ("stage", "draw")))] == 4
    assert values[("coarse_loftr_stage_seconds_sum", (("role", "live"), ("stage", "inference")))] > 0


def test_stream_queue_and_budget_gauges(traffic):
    _, values = traffic
    assert values[("coarse_loftr_stream_frames_total", (("outcome", "processed"),))] == 4
    assert values.get(("coarse_loftr_stream_frames_total", (("outcome", "dropped"),)), 0) == 0
    assert values[("coarse_loftr_websocket_sessions", ())] == 0  # the stream has closed
    assert values[("coarse_loftr_stream_fps", ())] == 0  # no stream open
    assert values[("coarse_loftr_queue_depth", ())] == 0
    assert values[("coarse_loftr_memory_budget_bytes", (("state", "used"),))] == 0  # all released
    assert values[("coarse_loftr_memory_budget_bytes", (("state", "total"),))] == 1e9
