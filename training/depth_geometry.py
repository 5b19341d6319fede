"""Pinhole projection with depth maps (pure numpy).

Conventions: pixel coordinates (x, y) with pixel centres at integers; intrinsics K map
camera coordinates to those pixels; extrinsics are 4x4 world -> camera; depth is the
camera-frame z (not the ray length); 0 or non-finite depth means unknown.
"""

from __future__ import annotations

import numpy as np


def crop_resize_intrinsics(
    intrinsic: np.ndarray, crop_xy: tuple[float, float], scale_xy: tuple[float, float]
) -> np.ndarray:
    """K of an image cropped at (x0, y0) (source pixels) then resized by (sx, sy)
    output pixels per source pixel. With centres at integers a source x lands at
    (x - x0 + 0.5) * sx - 0.5."""
    x0, y0 = crop_xy
    sx, sy = scale_xy
    k = np.asarray(intrinsic, dtype=np.float64).copy()
    k[0] = k[0] * sx
    k[1] = k[1] * sy
    k[0, 2] = (intrinsic[0, 2] - x0 + 0.5) * sx - 0.5
    k[1, 2] = (intrinsic[1, 2] - y0 + 0.5) * sy - 0.5
    return k


def relative_pose(extrinsic0: np.ndarray, extrinsic1: np.ndarray) -> np.ndarray:
    """4x4 map of camera0 coordinates to camera1 coordinates (both world -> camera)."""
    return extrinsic1 @ np.linalg.inv(extrinsic0)


def unproject(points: np.ndarray, depth: np.ndarray, intrinsic: np.ndarray) -> np.ndarray:
    """(N, 2) pixels with (N,) z-depth -> (N, 3) camera coordinates."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    rays = homogeneous @ np.linalg.inv(intrinsic).T  # z = 1 on every ray
    return rays * depth[:, None]


def transform(points3: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N, 3) points through a 4x4 rigid transform."""
    return points3 @ pose[:3, :3].T + pose[:3, 3]


def project(
    points3: np.ndarray, intrinsic: np.ndarray, min_depth: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) camera coordinates -> (N, 2) pixels, (N,) z, (N,) bool in front of the camera."""
    z = points3[:, 2]
    in_front = z > min_depth
    safe_z = np.where(in_front, z, 1.0)
    pixels = (points3 @ intrinsic.T)[:, :2] / safe_z[:, None]
    return pixels, z, in_front


def sample_depth(
    depth_map: np.ndarray, points: np.ndarray, max_spread: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Depth at sub-pixel (N, 2) points of an (H, W) map.

    Interpolates inverse depth bilinearly, which is exact on planes (1/z is affine in
    the image of a plane). A point is valid only if its four neighbours are all known
    and agree within `max_spread` (max / min - 1): across a depth edge the interpolated
    value would lie on neither surface. Points beyond the outermost pixel centres use
    the edge pixels. Returns (N,) depth and (N,) bool.
    """
    height, width = depth_map.shape
    x = np.clip(points[:, 0], 0, width - 1)
    y = np.clip(points[:, 1], 0, height - 1)
    finite = np.isfinite(points).all(axis=1)
    x = np.where(finite, x, 0.0)
    y = np.where(finite, y, 0.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2) if width > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2) if height > 1 else np.zeros(len(y), np.int64)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    corners = np.stack(
        [depth_map[y0, x0], depth_map[y0, x1], depth_map[y1, x0], depth_map[y1, x1]], axis=1
    ).astype(np.float64)
    known = np.all(np.isfinite(corners) & (corners > 0), axis=1)
    safe = np.where(known[:, None], corners, 1.0)
    consistent = safe.max(axis=1) <= safe.min(axis=1) * (1 + max_spread)
    inverse = 1.0 / safe
    weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    depth = 1.0 / (inverse * weights).sum(axis=1)
    return depth, finite & known & consistent


def warp_with_depth(
    points0: np.ndarray,
    depth0: np.ndarray,
    intrinsic0: np.ndarray,
    pose_0to1: np.ndarray,
    intrinsic1: np.ndarray,
    depth1: np.ndarray,
    tolerance: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Where (N, 2) pixels of view 0 land in view 1, and whether they are seen there.

    Each point is lifted with view 0's depth map, moved by `pose_0to1` (camera0 ->
    camera1) and projected with `intrinsic1`. It is kept when its depth in camera 1
    agrees with view 1's depth map at the projection within `tolerance` (relative):
    a closer surface there means it is occluded; no depth there means it left the view
    or hit the sky. `tolerance` also bounds the neighbour spread of both depth lookups.
    Returns (N, 2) pixels of view 1 and (N,) bool.
    """
    z0, valid0 = sample_depth(depth0, points0, tolerance)
    points3 = transform(unproject(points0, z0, intrinsic0), pose_0to1)
    points1, z1, in_front = project(points3, intrinsic1)
    height, width = depth1.shape
    inside = (
        (points1[:, 0] >= -0.5)
        & (points1[:, 0] < width - 0.5)
        & (points1[:, 1] >= -0.5)
        & (points1[:, 1] < height - 0.5)
    )
    observed, valid1 = sample_depth(depth1, points1, tolerance)
    agrees = np.abs(z1 - observed) <= tolerance * observed
    return points1, valid0 & in_front & inside & valid1 & agrees
