"""Real-geometry pairs: two views of a scene with depth maps and poses (BlendedMVS layout).

Ground truth comes from projecting each coarse cell centre of one view into the other
with its depth and the two poses, kept only where the other view's depth map confirms
the point is visible there (see `depth_geometry.warp_with_depth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from coarse_loftr.inference.matching import grid_centres

from . import mvs_format
from .config import AugmentConfig, DepthConfig
from .depth_geometry import crop_resize_intrinsics, relative_pose, warp_with_depth
from .ground_truth import MatchTargets, targets_from_projections
from .homography_pairs import pair_to_tensors, photometric


@dataclass
class View:
    """One view at the training size: image (H, W) uint8, depth (H, W) float32 (camera
    z, 0 = unknown), intrinsic (3, 3) in pixels of this size, extrinsic (4, 4) world -> camera."""

    image: np.ndarray
    depth: np.ndarray
    intrinsic: np.ndarray
    extrinsic: np.ndarray


def load_view(scene: Path, view: int, size: tuple[int, int]) -> View:
    """Read one view and bring it to `size` (W, H): centre-crop to that aspect ratio,
    resize the image (area / linear) and the depth map (nearest, so no depth is invented
    across surfaces), and move the intrinsics with them."""
    name = mvs_format.view_name(view)
    image_path = scene / mvs_format.IMAGE_DIR / f"{name}.jpg"
    if not image_path.exists():
        image_path = image_path.with_suffix(".png")
    image = cv2.imread(str(image_path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {image_path}")
    depth = mvs_format.read_pfm(scene / mvs_format.DEPTH_DIR / f"{name}.pfm")
    camera = mvs_format.read_cam(scene / mvs_format.CAM_DIR / f"{name}_cam.txt")
    height, width = image.shape
    if depth.shape != image.shape:
        # The intrinsics describe the image; bring the depth map onto its pixels.
        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    out_w, out_h = size
    crop_w = min(width, round(height * out_w / out_h))
    crop_h = min(height, round(width * out_h / out_w))
    x0, y0 = (width - crop_w) // 2, (height - crop_h) // 2
    image = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
    depth = depth[y0 : y0 + crop_h, x0 : x0 + crop_w]
    scale = (out_w / crop_w, out_h / crop_h)
    if (crop_w, crop_h) != (out_w, out_h):
        flags = cv2.INTER_AREA if scale[0] < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=flags)
        depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST_EXACT)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    intrinsic = crop_resize_intrinsics(camera.intrinsic, (x0, y0), scale)
    return View(np.ascontiguousarray(image), depth, intrinsic, camera.extrinsic)


def targets_from_depth(
    view0: View, view1: View, grid_hw: tuple[int, int], stride: int, tolerance: float
) -> MatchTargets:
    """Coarse and fine targets of a pair of same-size views (both directions projected,
    for the mutual check)."""
    height, width = view0.depth.shape
    centres = grid_centres(grid_hw, stride)
    pose = relative_pose(view0.extrinsic, view1.extrinsic)
    points1, valid1 = warp_with_depth(
        centres, view0.depth, view0.intrinsic, pose, view1.intrinsic, view1.depth, tolerance
    )
    back0, back_valid0 = warp_with_depth(
        centres, view1.depth, view1.intrinsic, np.linalg.inv(pose), view0.intrinsic, view0.depth, tolerance
    )
    return targets_from_projections(points1, valid1, back0, back_valid0, grid_hw, stride, (width, height))


def list_scene_pairs(scene: Path, config: DepthConfig) -> list[tuple[int, int]]:
    """(view0, view1) pairs of one scene: each view with its best partners in pair.txt."""
    pair_file = scene / mvs_format.CAM_DIR / mvs_format.PAIR_FILE
    if not pair_file.is_file():
        raise FileNotFoundError(f"{scene}: no {mvs_format.CAM_DIR}/{mvs_format.PAIR_FILE}")
    pairs = []
    for view, partners in mvs_format.read_pairs(pair_file).items():
        chosen = [p for p, score in partners if score > config.min_score][: config.partners_per_view]
        pairs += [(view, partner) for partner in chosen]
    return pairs


class DepthPairs(Dataset):
    """Every listed view pair of the given scene folders, at the training size.

    Images are read per item (scenes are too large to hold). Photometric changes follow
    the homography pairs (image1 harder than image0); item i's are deterministic given
    (seed, i).
    """

    def __init__(
        self,
        scenes: list[Path],
        size: tuple[int, int],
        stride: int,
        config: DepthConfig,
        aug: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        width, height = size
        if width % stride or height % stride:
            raise ValueError(f"size {width}x{height} is not a multiple of the stride {stride}")
        self.size = size
        self.stride = stride
        self.config = config
        self.aug = aug
        self.seed = seed
        self.pairs: list[tuple[Path, int, int]] = []
        for scene in map(Path, scenes):
            self.pairs += [(scene, v0, v1) for v0, v1 in list_scene_pairs(scene, config)]
        if not self.pairs:
            raise ValueError(f"no view pairs found in {', '.join(map(str, scenes))}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene, v0, v1 = self.pairs[index]
        view0 = load_view(scene, v0, self.size)
        view1 = load_view(scene, v1, self.size)
        width, height = self.size
        grid_hw = (height // self.stride, width // self.stride)
        targets = targets_from_depth(view0, view1, grid_hw, self.stride, self.config.tolerance)
        image0, image1 = view0.image, view1.image
        if self.aug is not None:
            rng = np.random.default_rng([self.seed, index])
            image0 = photometric(image0, rng, self.aug, strength=0.3)
            image1 = photometric(image1, rng, self.aug, strength=1.0)
        return pair_to_tensors(image0, image1, targets)
