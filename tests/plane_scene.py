"""A scene whose geometry is known in closed form, for depth ground-truth tests: two
pinhole cameras looking at a textured plane. Depth is the exact ray-plane intersection
per pixel, so every view-to-view mapping equals the plane-induced homography
K1 (R + t n^T / d) K0^-1."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from coarse_loftr.training import mvs_format

# Plane n . X = d in world coordinates (= camera 0's frame), n of unit length.
PLANE_N = np.array([-0.25, 0.15, 1.0]) / np.linalg.norm([-0.25, 0.15, 1.0])
PLANE_D = 5.0


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation from angles in degrees about x, then y, then z."""
    a, b, c = (math.radians(v) for v in (ax, ay, az))
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def intrinsic_for(size: tuple[int, int], focal: float) -> np.ndarray:
    width, height = size
    return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])


def extrinsic_from(r: np.ndarray, t: np.ndarray) -> np.ndarray:
    e = np.eye(4)
    e[:3, :3], e[:3, 3] = r, t
    return e


def render_plane(
    extrinsic: np.ndarray, intrinsic: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact z-depth of the plane at every pixel centre and the texture seen there.
    Returns image (H, W) uint8 and depth (H, W) float32."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ np.linalg.inv(intrinsic).T  # z = 1
    r, t = extrinsic[:3, :3], extrinsic[:3, 3]
    # World point on a ray at depth s: X = R^T (s * ray - t); solve n . X = d for s.
    n_cam = r @ PLANE_N
    s = (PLANE_D + n_cam @ t) / (rays @ n_cam)
    world = (s[..., None] * rays - t) @ r
    u, v = world[..., 0], world[..., 1]
    texture = (
        0.5
        + 0.2 * np.sin(7.0 * u + 2.0 * v)
        + 0.15 * np.sin(-3.0 * u + 9.0 * v)
        + 0.15 * np.sign(np.sin(5.0 * u) * np.sin(5.0 * v))
    )
    image = (np.clip(texture, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, s.astype(np.float32)


class PlaneScene:
    """Camera 0 at the world origin, camera 1 moved and turned so that part of
    image0 leaves image1's view."""

    def __init__(self, size: tuple[int, int], focal: float = 60.0) -> None:
        self.size = size
        self.k0 = intrinsic_for(size, focal)
        self.k1 = intrinsic_for(size, focal * 1.1)
        self.e0 = np.eye(4)
        self.e1 = extrinsic_from(rotation(3.0, -9.0, 5.0), np.array([1.1, -0.2, 0.3]))
        self.image0, self.depth0 = render_plane(self.e0, self.k0, size)
        self.image1, self.depth1 = render_plane(self.e1, self.k1, size)

    def homography(self) -> np.ndarray:
        """Image0 pixels -> image1 pixels through the plane (camera 0 = world)."""
        r, t = self.e1[:3, :3], self.e1[:3, 3]
        return self.k1 @ (r + np.outer(t, PLANE_N) / PLANE_D) @ np.linalg.inv(self.k0)

    def write(self, folder: Path) -> Path:
        for sub in (mvs_format.IMAGE_DIR, mvs_format.DEPTH_DIR, mvs_format.CAM_DIR):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        views = [(self.image0, self.depth0, self.k0, self.e0), (self.image1, self.depth1, self.k1, self.e1)]
        for view, (image, depth, k, e) in enumerate(views):
            name = mvs_format.view_name(view)
            # PNG in place of BlendedMVS's JPEG: lossless, so pixel checks stay exact.
            cv2.imwrite(str(folder / mvs_format.IMAGE_DIR / f"{name}.png"), image)
            mvs_format.write_pfm(folder / mvs_format.DEPTH_DIR / f"{name}.pfm", depth)
            mvs_format.write_cam(
                folder / mvs_format.CAM_DIR / f"{name}_cam.txt", mvs_format.Camera(e, k, 2.0, 0.05)
            )
        mvs_format.write_pairs(
            folder / mvs_format.CAM_DIR / mvs_format.PAIR_FILE, {0: [(1, 0.9)], 1: [(0, 0.9)]}
        )
        return folder
