"""Service settings: limits, queue size and threads, overridable from the environment.

Every field reads `COARSE_LOFTR_<FIELD>` (e.g. `COARSE_LOFTR_MAX_UPLOAD_BYTES=5000000`);
`coarse-loftr serve` options take precedence over the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coarse_loftr.inference.io import MAX_IMAGE_BYTES


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COARSE_LOFTR_", frozen=True)

    weights: Path | None = Field(None, description="ONNX model (or engine) to serve; None: shipped weights")
    backend: str = Field("auto", description="auto | onnxruntime | tensorrt | torch")
    size: tuple[int, int] | None = Field(
        None, description="model input (width, height) for uploads; None: the weights' default model"
    )
    live_size: tuple[int, int] | None = Field(
        None, description="model input (width, height) of the live stream; None: the weights' live model"
    )
    num_threads: int | None = Field(
        None, ge=1, description="intra-op threads of the backend; None: its default"
    )

    # Uploads. Bytes are checked while the body streams in; decoded bytes from the header,
    # before decoding (a tiny PNG may claim 50000 x 50000 16-bit RGBA pixels).
    max_upload_bytes: int = Field(20_000_000, ge=1, description="per image, encoded bytes")
    max_image_bytes: int = Field(
        MAX_IMAGE_BYTES, ge=1, description="per image, decoded bytes (width * height * bytes per pixel)"
    )
    # Every decode (uploads and stream frames together) reserves its decoded bytes plus the
    # float32 copy that preprocessing makes; when the budget is spent the answer is 503.
    memory_budget_bytes: int = Field(
        1_000_000_000, ge=1, description="decoded images held at once across requests and streams, bytes"
    )

    # The inference worker: at most this many jobs wait; beyond that /match answers 503.
    queue_size: int = Field(8, ge=1)
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 503 answer, seconds")

    # The live stream.
    stream_references: int = Field(
        8,
        ge=0,
        le=256,
        description=(
            "stream references whose half of the model is kept (about 0.6 MB each at 320x240), "
            "so that each frame costs only its own half; 0: compute both halves for every frame"
        ),
    )
    ws_max_frame_bytes: int = Field(4_000_000, ge=1, description="largest binary frame, bytes")
    ws_max_side: int = Field(640, ge=32, le=4096, description="frames are shrunk to this longest side")
    overlay_quality: int = Field(80, ge=10, le=100, description="JPEG quality of overlay images")
    allowed_origins: tuple[str, ...] = Field(
        (),
        description="origins (scheme://host[:port]) besides the service's own that may open the "
        "WebSocket; '*' allows any",
    )

    # Production.
    root_path: str = Field("", description="path prefix a reverse proxy serves the app under, e.g. /matcher")
    header_timeout_s: float = Field(10.0, gt=0, description="a request's headers must arrive within this")
    body_timeout_s: float = Field(30.0, gt=0, description="longest wait for the next piece of a body")
    log_format: Literal["json", "plain"] = Field("json", description="server log lines: JSON objects or text")

    @model_validator(mode="after")
    def _one_image_fits_the_budget(self) -> ServiceSettings:
        if self.max_image_bytes > self.memory_budget_bytes:
            raise ValueError(
                f"max_image_bytes ({self.max_image_bytes}) exceeds memory_budget_bytes "
                f"({self.memory_budget_bytes}): such an image could never be admitted"
            )
        return self
