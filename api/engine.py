"""How the service reaches its matchers: an `Engine` runs `Matcher.match` somewhere and
says what it serves. The routes and the stream only see `Service`, which talks to one
engine: `LocalEngine` (the matchers in this process, on one worker thread) or
`api.ray_serve.RayEngine` (a Ray Serve deployment of matcher replicas).

Every answer names the replica that matched it; the app's `ReplicaHeader` middleware
puts that name in the `X-Replica` header of the HTTP response.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from coarse_loftr.inference import Matcher
from coarse_loftr.inference.backends.base import ModelInfo

from .worker import InferenceWorker

#: The HTTP header naming the replica that matched a request.
REPLICA_HEADER = "X-Replica"
#: The replica name of the in-process engine.
LOCAL_REPLICA = "local"


class ModelCard(Protocol):
    """What the routes read of a model (a `Matcher` is one)."""

    info: ModelInfo

    @property
    def input_size(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class RemoteModel:
    """A model loaded elsewhere (in a replica): its info, without the runtime."""

    info: ModelInfo

    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input_size


@dataclass(frozen=True)
class Matched:
    """result: the `MatchResult`; inference_ms: time of the `Matcher.match` call itself
    (queueing and transfer excluded); replica: the name of the replica that ran it."""

    result: Any
    inference_ms: float
    replica: str


class Engine(Protocol):
    model: ModelCard  # /match and /register
    live_model: ModelCard  # the WebSocket stream
    backend_name: str

    async def match(self, image0: np.ndarray, image1: np.ndarray, live: bool, **options: Any) -> Matched:
        """`Matcher.match` of the uploads (or, with `live`, the stream's) model; raises
        `ResourceBusy` when no more work can wait."""
        ...

    async def replicas(self) -> list[str]:
        """Names of the replicas that match requests now."""
        ...

    async def close(self) -> None: ...


class LocalEngine:
    """The matchers in this process: backend calls run in order on one worker thread
    behind a queue of `queue_size` (a full queue raises `WorkerBusy`). `owns_matchers`:
    `close` frees their backends too (they were loaded for this engine)."""

    def __init__(
        self,
        model: Matcher,
        live_model: Matcher,
        queue_size: int,
        replica: str = LOCAL_REPLICA,
        owns_matchers: bool = False,
    ) -> None:
        self.model, self.live_model, self.replica = model, live_model, replica
        self.owns_matchers = owns_matchers
        self.backend_name = model.backend.describe()
        self.worker = InferenceWorker(queue_size)

    async def match(self, image0: np.ndarray, image1: np.ndarray, live: bool, **options: Any) -> Matched:
        matcher = self.live_model if live else self.model
        result, inference_ms = await self.worker.submit(_timed, matcher.match, image0, image1, **options)
        return Matched(result, inference_ms, self.replica)

    async def replicas(self) -> list[str]:
        return [self.replica]

    async def close(self) -> None:
        self.worker.close()  # waits for the job in flight, so no backend call is cut short
        if self.owns_matchers:
            for matcher in {id(m): m for m in (self.model, self.live_model)}.values():
                matcher.close()


def _timed(fn, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, (time.perf_counter() - start) * 1000.0


# The replica of the current HTTP request: `ReplicaHeader` puts a fresh dict here before
# the route runs and reads it when the response starts. A dict rather than the name, so
# that the value set under a copied context (a task, a thread) is seen by the middleware.
_replica_slot: ContextVar[dict[str, str] | None] = ContextVar("coarse_loftr_replica", default=None)


def note_replica(name: str) -> None:
    """Record, for the current HTTP request, the replica that matched it."""
    slot = _replica_slot.get()
    if slot is not None:
        slot["name"] = name


class ReplicaHeader:
    """ASGI middleware: `X-Replica: <name>` on every HTTP answer whose request was
    matched (by `Service.match`)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        slot: dict[str, str] = {}
        token = _replica_slot.set(slot)

        async def send_with_header(message):
            if message["type"] == "http.response.start" and "name" in slot:
                header = (REPLICA_HEADER.lower().encode(), slot["name"].encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            _replica_slot.reset(token)
