"""Decoded image -> model input, and the exact map between their pixel coordinates.

Convention everywhere: pixel centres at integer coordinates (OpenCV's), so an image of
width w spans x in [-0.5, w - 0.5].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"expected (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")


def to_gray_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 gray, BGR or BGRA (as decoded) -> (H, W) float32 in [0, 1].

    16-bit images are scaled by 1/65535; alpha is dropped.
    """
    _check_image(image)
    if image.ndim == 3:
        codes = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}
        code = codes[image.shape[2]]
        image = image[:, :, 0] if code is None else cv2.cvtColor(image, code)
    scale = np.float32(1.0 / (65535.0 if image.dtype == np.uint16 else 255.0))
    # One float32 array, not a cast and then a product (a large image's memory peak).
    return np.multiply(image, scale, dtype=np.float32)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image -> (H, W, 3) uint8 BGR for display (16-bit keeps its top byte)."""
    _check_image(image)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class Letterbox:
    """How an original image sits in the model input: resized by `scale` (per axis,
    the ratio actually used after rounding), top-left aligned, zero padding right and
    bottom.

    original_size, resized_size, input_size: (width, height) in pixels.
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): model-input pixels per original pixel along each axis."""
        return (self.resized_size[0] / self.original_size[0], self.resized_size[1] / self.original_size[1])

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) x, y in model-input pixels -> original-image pixels (float64)."""
        points = np.asarray(points, dtype=np.float64)
        return (points + 0.5) / np.asarray(self.scale) - 0.5

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) x, y in original-image pixels -> model-input pixels (float64)."""
        points = np.asarray(points, dtype=np.float64)
        return (points + 0.5) * np.asarray(self.scale) - 0.5

    def in_valid_region(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: model-input points that lie on the image, not in the padding
        (the image covers [-0.5, w - 0.5] x [-0.5, h - 0.5] of the input)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        width, height = self.resized_size
        return (
            (points[:, 0] >= -0.5)
            & (points[:, 0] <= width - 0.5)
            & (points[:, 1] >= -0.5)
            & (points[:, 1] <= height - 0.5)
        )


def unreduce(points: np.ndarray, factor: int) -> np.ndarray:
    """(N, 2) x, y in pixels of an image decoded at 1/`factor` scale (JPEG DCT scaling,
    `io.decode_image(..., factor=k)`) -> pixels of the full-resolution image (float32).

    Reduced pixel i covers full pixels [k*i, k*i + k), whose centre is k*i + (k - 1)/2:
    x_full = (x + 0.5) * k - 0.5, the same convention as `Letterbox.to_original`.
    """
    points = np.asarray(points, dtype=np.float64)
    return ((points + 0.5) * factor - 0.5).astype(np.float32)


def fit_size(original_size: tuple[int, int], input_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of an image scaled to fit `input_size` with its aspect ratio kept."""
    width, height = original_size
    in_width, in_height = input_size
    scale = min(in_width / width, in_height / height)
    return (min(in_width, max(1, round(width * scale))), min(in_height, max(1, round(height * scale))))


def letterbox(gray: np.ndarray, input_size: tuple[int, int], turns: int = 0) -> tuple[np.ndarray, Letterbox]:
    """(H, W) float32 gray -> ((1, 1, H_in, W_in) float32 model input, its `Letterbox`).

    input_size: (W_in, H_in). The image is resized to fit with its aspect ratio kept
    (INTER_AREA when shrinking, which averages instead of aliasing; INTER_LINEAR when
    enlarging) and padded with zeros on the right and bottom. `turns`: quarter turns
    counter-clockwise (`np.rot90`) given to the image first; the Letterbox is then that of
    the turned image (see `unrotate_points`). The small resized copy is what is turned, so
    no full-size copy is made (both interpolations commute with quarter turns).
    """
    if gray.ndim != 2 or gray.dtype != np.float32:
        raise ValueError(f"expected (H, W) float32, got {gray.shape} {gray.dtype}")
    original = (gray.shape[1], gray.shape[0])
    sideways = turns % 2 == 1
    turned = (original[1], original[0]) if sideways else original
    resized = fit_size(turned, input_size)
    unturned = (resized[1], resized[0]) if sideways else resized
    if unturned != original:
        shrinking = resized[0] * resized[1] < original[0] * original[1]
        gray = cv2.resize(gray, unturned, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    model_input = np.zeros((1, 1, input_size[1], input_size[0]), dtype=np.float32)
    model_input[0, 0, : resized[1], : resized[0]] = np.rot90(gray, turns)
    return model_input, Letterbox(turned, resized, (input_size[0], input_size[1]))


def unrotate_points(points: np.ndarray, turns: int, size: tuple[int, int]) -> np.ndarray:
    """(N, 2) x, y in pixels of `np.rot90(image, turns)` -> pixels of `image`,
    whose (width, height) is `size`. Exact for sub-pixel positions (centres at integers)."""
    points = np.asarray(points, dtype=np.float64)
    width, height = size
    x, y = points[:, 0], points[:, 1]
    turns %= 4
    if turns == 1:
        return np.stack([width - 1 - y, x], axis=1)
    if turns == 2:
        return np.stack([width - 1 - x, height - 1 - y], axis=1)
    if turns == 3:
        return np.stack([y, height - 1 - x], axis=1)
    return points.copy()
