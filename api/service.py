"""What the routes and the WebSocket share: the engine that runs the matchers (one model
for uploads, one for the live stream; often the same object), the limits, and the steps
of a request, each run off the event loop.

Decoding and drawing run on the default thread pool (they release the GIL inside
OpenCV, so they overlap with inference); only backend calls go through the engine
(`api.engine`: a worker thread in this process, or Ray Serve replicas).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coarse_loftr.inference.errors import ResourceBusy
from coarse_loftr.inference.io import (
    ImageError,
    ImageHeader,
    UnsupportedImageFormat,
    check_header,
    decode_image,
    read_header,
    reduction_for,
)
from coarse_loftr.inference.preprocess import fit_size, unreduce

from .budget import BudgetSpent, MemoryBudget, Reservation, image_cost
from .engine import Engine, ModelCard, note_replica
from .errors import ApiError
from .metrics import Metrics
from .settings import ServiceSettings


@dataclass(frozen=True)
class Decoded:
    """One decoded image. image: as `decode_image` returns it, at 1/`factor` scale (a
    JPEG decoded smaller in the DCT because the model input is smaller anyway);
    size: (width, height) of the full-resolution upright image."""

    image: np.ndarray
    factor: int
    size: tuple[int, int]

    def to_full(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) points in `image`'s pixels -> full-resolution pixels."""
        return points if self.factor == 1 else unreduce(points, self.factor)


@dataclass
class Service:
    settings: ServiceSettings
    engine: Engine
    metrics: Metrics = field(default_factory=Metrics)
    budget: MemoryBudget = field(init=False)
    #: Frames-per-second meters of the open streams (objects with a `.rate`), for /metrics.
    streams: set = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.budget = MemoryBudget(self.settings.memory_budget_bytes)
        worker = getattr(self.engine, "worker", None)
        self.metrics.watch(
            queue_depth=lambda: worker.pending if worker is not None else 0,
            budget_used=lambda: self.budget.used,
            budget_total=self.budget.total,
            stream_fps=lambda: sum(m.rate for m in self.streams) / len(self.streams) if self.streams else 0.0,
        )

    @property
    def matcher(self) -> ModelCard:
        """The model of /match and /register."""
        return self.engine.model

    @property
    def live_matcher(self) -> ModelCard:
        """The model of the WebSocket stream."""
        return self.engine.live_model

    @property
    def backend_name(self) -> str:
        return self.engine.backend_name

    def check_size(self, name: str, size: int) -> None:
        """413 for an image over the byte limit; 422 for an empty one."""
        if size == 0:
            raise ApiError(422, "empty_image", f"image {name!r} is empty")
        if size > self.settings.max_upload_bytes:
            raise ApiError(
                413,
                "image_too_large",
                f"image {name!r} has {size} bytes; the limit is {self.settings.max_upload_bytes}",
            )

    def admit(self, reservation: Reservation, nbytes: int) -> None:
        """Reserve `nbytes` of the memory budget on `reservation`; 503 `BudgetSpent` (counted
        in /metrics) when it is spent."""
        try:
            reservation.add(nbytes)
        except BudgetSpent:
            self.metrics.busy.labels("memory").inc()
            raise

    async def decode(
        self,
        reservation: Reservation,
        parts: Sequence[tuple[str, bytes]],
        needed: tuple[int, int] | None = None,
        formats: Collection[str] | None = None,
        live: bool = False,
    ) -> list[Decoded]:
        """Named encoded images -> decoded ones, admitted first: every header is read
        and checked (bytes, decoded bytes, format), then their whole cost is reserved on
        `reservation` (503 `BudgetSpent` when the budget is spent), then they are decoded
        side by side on the thread pool.

        needed: (width, height) the images are shrunk to afterwards (the model input):
        a JPEG larger than that decodes at 1/2, 1/4 or 1/8 scale; None: full size.
        formats: Pillow format names accepted (None: every decodable one); live: counted
        as the stream's (metrics). Errors are `ImageError`s naming the part."""
        start = time.perf_counter()
        plans: list[tuple[str, bytes, ImageHeader, int]] = []
        for name, data in parts:
            self.check_size(name, len(data))
            with _naming(name):
                header = await asyncio.to_thread(read_header, data)
                if formats is not None and header.format not in formats:
                    raise UnsupportedImageFormat(
                        f"{header.format} is not accepted here; send {' or '.join(sorted(formats))}"
                    )
                factor = 1 if needed is None else reduction_for(header, fit_size(header.upright_size, needed))
                check_header(header, self.settings.max_image_bytes, factor)
            plans.append((name, data, header, factor))
        self.admit(reservation, sum(image_cost(header, factor) for _, _, header, factor in plans))
        decoded = list(await asyncio.gather(*(self._decode(*plan) for plan in plans)))
        self.metrics.observe("decode", live, time.perf_counter() - start)
        return decoded

    async def _decode(self, name: str, data: bytes, header: ImageHeader, factor: int) -> Decoded:
        with _naming(name):
            image = await asyncio.to_thread(decode_image, data, self.settings.max_image_bytes, factor, header)
        return Decoded(image, factor, header.upright_size)

    @staticmethod
    def full_resolution(result: Any, image0: Decoded, image1: Decoded) -> Any:
        """A `MatchResult` of reduced decodes -> the same in full-resolution pixels."""
        if image0.factor == image1.factor == 1:
            return result
        return dataclasses.replace(
            result,
            keypoints0=image0.to_full(result.keypoints0),
            keypoints1=image1.to_full(result.keypoints1),
            image_size0=image0.size,
            image_size1=image1.size,
        )

    async def match(
        self, image0: np.ndarray, image1: np.ndarray, live: bool = False, **options: Any
    ) -> tuple[Any, float]:
        """`Matcher.match` of the uploads (or, with `live`, the stream's) model, run by
        the engine. Returns (MatchResult, milliseconds the call itself took, queueing
        excluded) and notes the replica for the `X-Replica` header. 503 when the engine
        cannot take more work."""
        try:
            matched = await self.engine.match(image0, image1, live=live, **options)
        except ResourceBusy as error:
            self.metrics.busy.labels("queue").inc()
            detail = "the server is busy; retry shortly" if error.code == "busy" else str(error)
            raise ApiError(
                503, error.code, detail, {"Retry-After": str(self.settings.retry_after_s)}
            ) from None
        note_replica(matched.replica)
        self.metrics.observe("inference", live, matched.inference_ms / 1000.0)
        return matched.result, matched.inference_ms


@contextmanager
def _naming(name: str) -> Iterator[None]:
    """Prefix an `ImageError` raised inside with the name of the part (`image 'a': ...`)."""
    try:
        yield
    except ImageError as error:
        raise type(error)(f"image {name!r}: {error}") from None
