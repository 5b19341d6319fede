"""Service settings: limits, queue size and threads, overridable from the environment.

Every field reads `COARSE_LOFTR_<FIELD>` (e.g. `COARSE_LOFTR_MAX_UPLOAD_BYTES=5000000`);
`coarse-loftr serve` options take precedence over the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # Uploads. Bytes are checked while reading; pixels from the header, before decoding
    # (a tiny PNG may claim 50000 x 50000 pixels).
    max_upload_bytes: int = Field(20_000_000, ge=1, description="per image, bytes")
    max_pixels: int = Field(40_000_000, ge=1, description="per image, width * height")

    # The inference worker: at most this many jobs wait; beyond that /match answers 503.
    queue_size: int = Field(8, ge=1)
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 503 answer, seconds")

    # The live stream.
    ws_max_frame_bytes: int = Field(4_000_000, ge=1, description="largest binary frame, bytes")
    ws_max_side: int = Field(640, ge=32, le=4096, description="frames are shrunk to this longest side")
    overlay_quality: int = Field(80, ge=10, le=100, description="JPEG quality of overlay images")
