"""The robust homography fit shared by every evaluated method, timed separately from matching.

The fit itself is the product's (`inference.registration.estimate_homography`: OpenCV USAC
MAGSAC), so the evaluation measures exactly what the service returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from coarse_loftr.inference.registration import estimate_homography


@dataclass(frozen=True)
class Correspondences:
    """(N, 2) matched points: keypoints0 in image0 pixels, keypoints1 in image1 pixels."""

    keypoints0: np.ndarray
    keypoints1: np.ndarray


@dataclass(frozen=True)
class TimedFit:
    """matrix: 3x3 float64 mapping image0 pixels to image1 pixels, or None (failure);
    num_inliers: matches within the threshold; seconds: wall clock of the fit."""

    matrix: np.ndarray | None
    num_inliers: int
    seconds: float


def fit_homography(keypoints0: np.ndarray, keypoints1: np.ndarray, threshold_px: float) -> TimedFit:
    """USAC MAGSAC homography from matched points; `threshold_px` is the inlier threshold
    in image1 pixels (other settings: `inference.config.RegistrationConfig` defaults)."""
    start = time.perf_counter()
    geometry = estimate_homography(Correspondences(keypoints0, keypoints1), threshold_px=threshold_px)
    seconds = time.perf_counter() - start
    matrix = geometry.matrix
    if matrix is not None and not np.isfinite(matrix).all():
        return TimedFit(None, 0, seconds)
    return TimedFit(matrix, geometry.num_inliers, seconds)
