"""Homography accuracy as in the HPatches protocol of the LoFTR paper.

Corner convention: the four corners of image a are the centres of its corner pixels,
(0, 0), (w-1, 0), (w-1, h-1), (0, h-1), with pixel centres at integer coordinates (the
manifest's and OpenCV's convention). The corner error of an estimate is the mean
Euclidean distance, in pixels of image b, between those corners warped by the
estimated and by the true homography. A pair without an estimate ("failure") has an
infinite error, so it lowers every AUC and never counts as a success.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AUC_THRESHOLDS_PX: tuple[float, ...] = (3.0, 5.0, 10.0)


def image_corners(width: int, height: int) -> np.ndarray:
    """(4, 2) float64 corner pixel centres (x, y) of a `width` x `height` image, clockwise
    from the top-left."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)


def warp_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to (N, 2) points; points mapped to infinity become inf."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ matrix.T
    w = homogeneous[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        warped = homogeneous[:, :2] / w
    warped[~np.isfinite(warped)] = np.inf
    warped[np.abs(w[:, 0]) < 1e-12] = np.inf
    return warped


def corner_error(estimate: np.ndarray | None, truth: np.ndarray, size_a: tuple[int, int]) -> float:
    """Mean distance (pixels of image b) of image a's four corners warped by `estimate`
    and by `truth` (both 3x3, a -> b). `size_a` is (width, height) of image a.
    Returns inf when there is no estimate or it sends a corner to infinity."""
    if estimate is None:
        return float("inf")
    corners = image_corners(*size_a)
    estimated = warp_points(np.asarray(estimate, dtype=np.float64), corners)
    expected = warp_points(np.asarray(truth, dtype=np.float64), corners)
    distances = np.linalg.norm(estimated - expected, axis=1)
    error = float(distances.mean())
    return error if np.isfinite(error) else float("inf")


def error_auc(
    errors: Sequence[float] | np.ndarray, thresholds: Sequence[float] = AUC_THRESHOLDS_PX
) -> dict[float, float]:
    """Area under the cumulative error curve up to each threshold, normalised to [0, 1].

    The curve is the SuperGlue / LoFTR one: recall i/n at the i-th smallest error,
    joined linearly from (0, 0), and flat from the last error below the threshold up to
    the threshold. Infinite errors (failures) count in n but never raise the curve.
    """
    values = np.sort(np.asarray(errors, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("no errors to summarise")
    if np.isnan(values).any():
        raise ValueError("errors must not be NaN (use inf for failures)")
    recall = np.arange(1, values.size + 1) / values.size
    curve_x = np.concatenate([[0.0], values])
    curve_y = np.concatenate([[0.0], recall])
    aucs = {}
    for threshold in thresholds:
        if threshold <= 0:
            raise ValueError(f"AUC threshold must be positive, got {threshold}")
        below = int(np.searchsorted(curve_x, threshold, side="left"))
        x = np.concatenate([curve_x[:below], [threshold]])
        y = np.concatenate([curve_y[:below], [curve_y[below - 1]]])
        area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
        aucs[float(threshold)] = area / threshold
    return aucs


def cumulative_curve(errors: Sequence[float] | np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Fraction of pairs with corner error <= x for each x in `xs` (failures never count)."""
    values = np.sort(np.asarray(errors, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("no errors to summarise")
    return np.searchsorted(values, xs, side="right") / values.size
