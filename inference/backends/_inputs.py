"""Input validation shared by every backend."""

from __future__ import annotations

import numpy as np

from .base import ModelInfo


def check_image(info: ModelInfo, name: str, image: np.ndarray) -> np.ndarray:
    """The image as a contiguous float32 (1, 1, H, W) array, or a ValueError that says
    what the model expects."""
    width, height = info.input_size
    expected = (1, 1, height, width)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.shape != expected:
        raise ValueError(
            f"{name} has shape {image.shape}; model {info.name!r} takes "
            f"{expected} (1, 1, H, W) grayscale for a {width}x{height} input"
        )
    if image.dtype != np.float32 and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name} has dtype {image.dtype}; expected float32 in [0, 1]")
    return np.ascontiguousarray(image, dtype=np.float32)


def check_pair(info: ModelInfo, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`check_image` of both images."""
    return check_image(info, "image0", image0), check_image(info, "image1", image1)
