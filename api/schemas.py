"""Typed request options and response bodies (they make the OpenAPI schema)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

Point = Annotated[list[float], Field(min_length=2, max_length=2, description="(x, y) in pixels")]
Matrix3x3 = Annotated[
    list[Annotated[list[float], Field(min_length=3, max_length=3)]], Field(min_length=3, max_length=3)
]


class RansacMethod(str, Enum):
    none = "none"
    homography = "homography"
    fundamental = "fundamental"


class OutputFormat(str, Enum):
    json = "json"
    png = "png"


class Include(str, Enum):
    """Images `/match` can add to its JSON answer (base64 PNG fields), from the same model run."""

    overlay = "overlay"
    warp = "warp"


class ImageSize(BaseModel):
    width: int
    height: int


class Timings(BaseModel):
    """Milliseconds spent in each stage of one request."""

    decode: float
    inference: float
    postprocess: float
    total: float


class MatchResponse(BaseModel):
    """Matches between image a and image b; keypoints are in each image's own pixels
    (0-based, pixel centres at integer coordinates)."""

    num_matches: int
    keypoints0: list[Point] = Field(description="points of image a")
    keypoints1: list[Point] = Field(description="the matching points of image b")
    confidence: list[float] = Field(description="per match, in [0, 1]")
    image_size0: ImageSize
    image_size1: ImageSize
    homography: Matrix3x3 | None = Field(
        None,
        description="3x3 matrix mapping a's pixels to b's (ransac=homography) or the "
        "fundamental matrix (ransac=fundamental); null when not asked or not found",
    )
    inliers: list[bool] | None = Field(None, description="per match, when RANSAC ran")
    num_inliers: int | None = None
    overlay_png: str | None = Field(
        None, description="base64 PNG of a | b with the matches drawn (include=overlay); null otherwise"
    )
    warp_png: str | None = Field(
        None,
        description="base64 PNG of a warped onto b by a homography and blended (include=warp; the "
        "ransac=homography one, else one fitted for the picture); null when not asked or none was found",
    )
    rotation_b: int = Field(
        0, description="degrees counter-clockwise b was turned for these matches (rotations=true), else 0"
    )
    timings_ms: Timings
    model: str
    backend: str


class RegisterResponse(BaseModel):
    """Image a registered onto image b by a homography."""

    homography: Matrix3x3 | None = Field(description="maps a's pixels to b's; null when none was found")
    num_matches: int
    num_inliers: int
    image_size0: ImageSize
    image_size1: ImageSize
    overlay_png: str | None = Field(
        description="base64 PNG: image a warped onto b and blended; null without a homography"
    )
    timings_ms: Timings
    model: str
    backend: str


class HealthResponse(BaseModel):
    status: Literal["ok"]
    backend: str


class InfoResponse(BaseModel):
    model: str
    input_size: ImageSize = Field(description="input in pixels of the model for /match and /register")
    live_input_size: ImageSize = Field(description="input in pixels of the live stream's model")
    backend: str
    version: str
    max_upload_bytes: int
    max_image_bytes: int = Field(description="per image, decoded bytes (width * height * bytes per pixel)")
    replicas: list[str] = Field(
        description="replicas that match requests (the X-Replica values): 'local' in one process, "
        "the Ray Serve replica ids with `serve --ray`"
    )


class ErrorResponse(BaseModel):
    """Every error answer of the service."""

    error: str = Field(description="a stable code, e.g. 'image_too_large'")
    detail: str = Field(description="what went wrong, in plain words")
    request_id: str | None = Field(
        None, description="the answer's X-Request-ID: quote it when reporting a problem (the log has details)"
    )
