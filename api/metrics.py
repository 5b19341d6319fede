"""`GET /metrics`: the service's counters in Prometheus' text format (prometheus-client).

Each app has its own registry (tests create many apps in one process). Names:

- `coarse_loftr_http_request_duration_seconds{route, method, status}`: histogram, the
  route's template (`/match`; `unmatched` for 404s, so hostile paths add no series);
- `coarse_loftr_http_requests_in_flight`, `coarse_loftr_queue_depth` (jobs waiting for
  the matcher), `coarse_loftr_memory_budget_bytes{state="used"|"total"}`;
- `coarse_loftr_busy_total{reason="queue"|"memory"}`: 503 answers and refused frames;
- `coarse_loftr_stage_seconds{stage="decode"|"inference"|"draw", role="default"|"live"}`;
- `coarse_loftr_websocket_sessions`, `coarse_loftr_stream_frames_total{outcome="processed"|
  "dropped"|"error"}`, `coarse_loftr_stream_fps` (mean server FPS of the open streams).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: What `generate_latest` writes: the classic text format, which every Prometheus reads
#: (recent prometheus-client releases label CONTENT_TYPE_LATEST version 1.0.0, unknown to Prometheus 2).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    """The registry and every metric of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "coarse_loftr_http_request_duration_seconds",
            "Time from a request's start to its answer's end",
            ("route", "method", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "coarse_loftr_http_requests_in_flight", "HTTP requests being served", registry=r
        )
        self.queue_depth = Gauge("coarse_loftr_queue_depth", "Jobs waiting for the matcher", registry=r)
        self.budget = Gauge(
            "coarse_loftr_memory_budget_bytes",
            "Decode memory budget: reserved and total",
            ("state",),
            registry=r,
        )
        self.busy = Counter(
            "coarse_loftr_busy",
            "Work refused because the queue or the memory budget was full",
            ("reason",),
            registry=r,
        )
        self.stage = Histogram(
            "coarse_loftr_stage_seconds",
            "Time of one step of a request or frame, per model role",
            ("stage", "role"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sessions = Gauge("coarse_loftr_websocket_sessions", "Open WebSocket streams", registry=r)
        self.frames = Counter(
            "coarse_loftr_stream_frames", "Stream frames by what became of them", ("outcome",), registry=r
        )
        self.stream_fps = Gauge("coarse_loftr_stream_fps", "Mean server FPS of the open streams", registry=r)

    def watch(
        self,
        queue_depth: Callable[[], float],
        budget_used: Callable[[], float],
        budget_total: float,
        stream_fps: Callable[[], float],
    ) -> None:
        """Gauges read at scrape time from the live objects."""
        self.queue_depth.set_function(queue_depth)
        self.budget.labels("used").set_function(budget_used)
        self.budget.labels("total").set(budget_total)
        self.stream_fps.set_function(stream_fps)

    def observe(self, stage: str, live: bool, seconds: float) -> None:
        self.stage.labels(stage, "live" if live else "default").observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus' text format (version 0.0.4)."""
    return Response(request.app.state.service.metrics.render(), media_type=CONTENT_TYPE)
