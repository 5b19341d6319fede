"""Coarse and fine targets from known geometry.

Any geometric source (a homography, depth + poses) reduces to: for every coarse cell
centre of image0, where it lands in image1 (input pixels) and whether that is valid.
From those positions this module derives the coarse match targets and the sub-cell
offsets that supervise the refinement head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coarse_loftr.inference.matching import grid_centres


def warp_points(points: np.ndarray, homography: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a 3x3 homography to (N, 2) points; returns (N, 2) and a mask of points
    that stay in front (positive w)."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ homography.T
    w = homogeneous[:, 2]
    valid = w > 1e-8
    safe_w = np.where(valid, w, 1.0)
    return homogeneous[:, :2] / safe_w[:, None], valid


def cell_index(
    points: np.ndarray, grid_hw: tuple[int, int], stride: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Row-major coarse cell holding each (x, y) point (input pixels) and whether the
    point lies inside the image of `size` (W, H)."""
    width, height = size
    rows, cols = grid_hw
    inside = (
        (points[:, 0] >= -0.5)
        & (points[:, 0] < width - 0.5)
        & (points[:, 1] >= -0.5)
        & (points[:, 1] < height - 0.5)
    )
    col = np.clip(np.floor((points[:, 0] + 0.5) / stride), 0, cols - 1).astype(np.int64)
    row = np.clip(np.floor((points[:, 1] + 0.5) / stride), 0, rows - 1).astype(np.int64)
    return row * cols + col, inside


@dataclass
class MatchTargets:
    """Targets of one pair on the coarse grid (N0 = N1 = rows * cols).

    match_index1: (N0,) int64 image1 cell holding each image0 cell centre's projection.
    coarse_valid: (N0,) bool, true where the match is mutual (image1's cell centre
        projects back into the same image0 cell) - the positives of the coarse loss.
    fine_valid: (N0,) bool, the projection lies inside image1 (and passed any
        visibility check) - rows supervising the refinement.
    offset1: (N0, 2) float32 true position minus the centre of `match_index1`'s cell,
        in input pixels.
    """

    match_index1: np.ndarray
    coarse_valid: np.ndarray
    fine_valid: np.ndarray
    offset1: np.ndarray


def targets_from_projections(
    points1: np.ndarray,
    valid1: np.ndarray,
    back_points0: np.ndarray,
    back_valid0: np.ndarray,
    grid_hw: tuple[int, int],
    stride: int,
    size: tuple[int, int],
) -> MatchTargets:
    """points1: (N0, 2) image0 cell centres projected into image1; back_points0: (N1, 2)
    image1 cell centres projected into image0; valid masks likewise. Input pixels."""
    index1, inside1 = cell_index(points1, grid_hw, stride, size)
    index0_back, inside0 = cell_index(back_points0, grid_hw, stride, size)
    fine_valid = valid1 & inside1
    back_ok = back_valid0 & inside0
    mutual = fine_valid & back_ok[index1] & (index0_back[index1] == np.arange(len(points1)))
    centres = grid_centres(grid_hw, stride)
    offset1 = (points1 - centres[index1]).astype(np.float32)
    offset1[~fine_valid] = 0.0
    return MatchTargets(index1, mutual, fine_valid, offset1)


def targets_from_homography(
    homography: np.ndarray, grid_hw: tuple[int, int], stride: int, size: tuple[int, int]
) -> MatchTargets:
    """Targets for a pair related by `homography` (3x3, image0 input px -> image1 input px)."""
    centres = grid_centres(grid_hw, stride)
    points1, valid1 = warp_points(centres, homography)
    back0, back_valid = warp_points(centres, np.linalg.inv(homography))
    return targets_from_projections(points1, valid1, back0, back_valid, grid_hw, stride, size)
