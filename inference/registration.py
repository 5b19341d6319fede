"""Robust geometry from matches (OpenCV USAC MAGSAC), and a warp overlay to look at it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .config import RegistrationConfig, with_overrides
from .drawing import MAX_CANVAS_SIDE
from .preprocess import to_bgr8


@dataclass(frozen=True)
class GeometryResult:
    """matrix: (3, 3) float64 mapping image0 -> image1 (homography: x1 ~ H x0;
    fundamental: x1^T F x0 = 0), or None when it could not be estimated;
    inliers: (N,) bool over the input matches."""

    matrix: np.ndarray | None
    inliers: np.ndarray
    num_inliers: int


def _points(matches: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        kpts0, kpts1 = matches.keypoints0, matches.keypoints1
    except AttributeError:
        raise TypeError(
            "expected matches with keypoints0 / keypoints1 "
            f"(Matches or MatchResult), got {type(matches).__name__}"
        ) from None
    kpts0 = np.asarray(kpts0, dtype=np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, dtype=np.float64).reshape(-1, 2)
    if len(kpts0) != len(kpts1):
        raise ValueError(f"{len(kpts0)} keypoints in image0 but {len(kpts1)} in image1")
    return kpts0, kpts1


def _estimate(
    matches: Any, config: RegistrationConfig | None, method: str, overrides: dict[str, Any]
) -> GeometryResult:
    config = with_overrides(config or RegistrationConfig(), method=method, **overrides)
    kpts0, kpts1 = _points(matches)
    count = len(kpts0)
    no_model = GeometryResult(None, np.zeros(count, dtype=bool), 0)
    if count < (4 if method == "homography" else 8):
        return no_model
    try:
        if method == "homography":
            matrix, mask = cv2.findHomography(
                kpts0,
                kpts1,
                cv2.USAC_MAGSAC,
                config.threshold_px,
                maxIters=config.max_iters,
                confidence=config.confidence,
            )
        else:
            matrix, mask = cv2.findFundamentalMat(
                kpts0, kpts1, cv2.USAC_MAGSAC, config.threshold_px, config.confidence, config.max_iters
            )
    except cv2.error:  # degenerate input (e.g. all points identical)
        return no_model
    if matrix is None or mask is None or matrix.shape != (3, 3):
        return no_model
    inliers = mask.reshape(-1).astype(bool)
    return GeometryResult(matrix.astype(np.float64), inliers, int(inliers.sum()))


def estimate_homography(
    matches: Any, config: RegistrationConfig | None = None, **overrides: Any
) -> GeometryResult:
    """Homography image0 -> image1 from `Matches` / `MatchResult` keypoints.

    overrides: `RegistrationConfig` fields (threshold_px in pixels of image1,
    confidence, max_iters). Fewer than 4 matches, or no consensus: matrix is None.
    """
    return _estimate(matches, config, "homography", overrides)


def estimate_fundamental(
    matches: Any, config: RegistrationConfig | None = None, **overrides: Any
) -> GeometryResult:
    """Fundamental matrix (x1^T F x0 = 0) from matches; needs at least 8, else None."""
    return _estimate(matches, config, "fundamental", overrides)


def warp_blend(
    image0: np.ndarray, image1: np.ndarray, homography: np.ndarray, max_side: int = MAX_CANVAS_SIDE
) -> np.ndarray:
    """image0 warped into image1's frame by `homography` (image0 -> image1) and blended
    50/50 with image1 where it lands; image1 alone elsewhere. Any decoded image kind
    in, (H1, W1, 3) uint8 BGR out, shrunk (aspect ratio kept) so that its longest side is
    at most `max_side`: the picture's memory is bounded whatever was uploaded."""
    matrix = np.asarray(homography, dtype=np.float64)
    height, width = image1.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image1 = cv2.resize(image1, size, interpolation=cv2.INTER_AREA)
        sx, sy = size[0] / width, size[1] / height
        # Pixel centres at integers: x' = (x + 0.5) * s - 0.5, composed after the homography.
        matrix = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]]) @ matrix
    bgr0, bgr1 = to_bgr8(image0), to_bgr8(image1)
    size = (bgr1.shape[1], bgr1.shape[0])
    warped = cv2.warpPerspective(bgr0, matrix, size, flags=cv2.INTER_LINEAR)
    coverage = cv2.warpPerspective(
        np.full(bgr0.shape[:2], 255, np.uint8), matrix, size, flags=cv2.INTER_NEAREST
    )
    blended = cv2.addWeighted(warped, 0.5, bgr1, 0.5, 0.0)
    return np.where(coverage[:, :, None] > 0, blended, bgr1)
