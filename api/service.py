"""What the routes and the WebSocket share: the engine that runs the matchers (one model
for uploads, one for the live stream; often the same object), the limits, and the steps
of a request, each run off the event loop.

Decoding and drawing run on the default thread pool (they release the GIL inside
OpenCV, so they overlap with inference); only backend calls go through the engine
(`api.engine`: a worker thread in this process, or Ray Serve replicas).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from coarse_loftr.inference.errors import ResourceBusy
from coarse_loftr.inference.io import ImageError, ImageTooLarge, UnsupportedImageFormat, decode_image

from .engine import Engine, ModelCard, note_replica
from .errors import ApiError
from .settings import ServiceSettings

_IMAGE_ERROR_CODES = {ImageTooLarge: "image_too_large", UnsupportedImageFormat: "unsupported_image"}


@dataclass
class Service:
    settings: ServiceSettings
    engine: Engine

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
        """`Matcher.match` of the uploads (or, with `live`, the stream's) model, run by
        the engine. Returns (MatchResult, milliseconds the call itself took, queueing
        excluded) and notes the replica for the `X-Replica` header. 503 when the engine
        cannot take more work."""
        try:
            matched = await self.engine.match(image0, image1, live=live, **options)
        except ResourceBusy as error:
            detail = "the server is busy; retry shortly" if error.code == "busy" else str(error)
            raise ApiError(
                503, error.code, detail, {"Retry-After": str(self.settings.retry_after_s)}
            ) from None
        note_replica(matched.replica)
        return matched.result, matched.inference_ms
