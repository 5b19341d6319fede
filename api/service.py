"""What the routes and the WebSocket share: the loaded matchers (one for uploads, one for
the live stream; often the same object), their worker, the limits, and the steps of a
request, each run off the event loop.

Decoding and drawing run on the default thread pool (they release the GIL inside
OpenCV, so they overlap with inference); only backend calls go through the single
inference worker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from coarse_loftr.inference import Matcher
from coarse_loftr.inference.io import ImageError, ImageTooLarge, UnsupportedImageFormat, decode_image

from .errors import ApiError
from .settings import ServiceSettings
from .worker import InferenceWorker, WorkerBusy

_IMAGE_ERROR_CODES = {ImageTooLarge: "image_too_large", UnsupportedImageFormat: "unsupported_image"}


@dataclass
class Service:
    settings: ServiceSettings
    matcher: Matcher  # /match and /register
    live_matcher: Matcher  # the WebSocket stream
    worker: InferenceWorker

    @property
    def backend_name(self) -> str:
        return self.matcher.backend.describe()

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

    async def decode(self, name: str, data: bytes) -> np.ndarray:
        """Bytes -> image ((H, W[, C]) uint8 / uint16), or an ApiError naming the part."""
        self.check_size(name, len(data))
        try:
            return await asyncio.to_thread(decode_image, data, self.settings.max_pixels)
        except ImageError as error:
            code = next(
                (c for cls, c in _IMAGE_ERROR_CODES.items() if isinstance(error, cls)), "invalid_image"
            )
            raise ApiError(error.http_status, code, f"image {name!r}: {error}") from None

    async def match(
        self, image0: np.ndarray, image1: np.ndarray, live: bool = False, **options: Any
    ) -> tuple[Any, float]:
        """`Matcher.match` of the uploads (or, with `live`, the stream's) matcher on the
        worker thread. Returns (MatchResult, milliseconds the call took on the worker,
        queueing excluded). 503 when the queue is full."""
        matcher = self.live_matcher if live else self.matcher
        try:
            future = self.worker.submit(_timed, matcher.match, image0, image1, **options)
        except WorkerBusy:
            raise ApiError(
                503,
                "busy",
                "the server is busy; retry shortly",
                {"Retry-After": str(self.settings.retry_after_s)},
            ) from None
        return await future


def _timed(fn, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, (time.perf_counter() - start) * 1000.0
