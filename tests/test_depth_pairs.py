"""Depth-based ground truth, checked against an exactly rendered plane scene
(tests/plane_scene.py), plus the BlendedMVS file formats and the pair mixer."""

from __future__ import annotations

import numpy as np
import pytest
from plane_scene import PLANE_D, PLANE_N, PlaneScene, intrinsic_for

from coarse_loftr.inference.matching import grid_centres
from coarse_loftr.training import mvs_format
from coarse_loftr.training.config import DepthConfig
from coarse_loftr.training.depth_geometry import (
    crop_resize_intrinsics,
    project,
    relative_pose,
    sample_depth,
    warp_with_depth,
)
from coarse_loftr.training.depth_pairs import DepthPairs, load_view, targets_from_depth
from coarse_loftr.training.ground_truth import warp_points
from coarse_loftr.training.mixed_pairs import SAMPLE_KEYS, MixedPairs

SIZE = (64, 48)
STRIDE = 8


@pytest.fixture(scope="module")
def scene() -> PlaneScene:
    return PlaneScene(SIZE)


def dense_points(size: tuple[int, int], step: float = 1.7) -> np.ndarray:
    width, height = size
    ys, xs = np.mgrid[0 : height - 1 : step, 0 : width - 1 : step]
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def test_rendered_depth_is_the_plane(scene):
    """The renderer itself: back-projected depth pixels satisfy n . X = d."""
    points = dense_points(SIZE, 1.0).astype(np.int64)
    depth = scene.depth1[points[:, 1], points[:, 0]].astype(np.float64)
    rays = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.linalg.inv(scene.k1).T
    world = (rays * depth[:, None] - scene.e1[:3, 3]) @ scene.e1[:3, :3]
    assert np.abs(world @ PLANE_N - PLANE_D).max() < 1e-4 * PLANE_D


def test_projection_equals_plane_homography(scene):
    points = dense_points(SIZE)
    pose = relative_pose(scene.e0, scene.e1)
    projected, valid = warp_with_depth(points, scene.depth0, scene.k0, pose, scene.k1, scene.depth1)
    expected, _ = warp_points(points, scene.homography())
    width, height = SIZE
    inside = (
        (expected[:, 0] >= -0.5)
        & (expected[:, 0] < width - 0.5)
        & (expected[:, 1] >= -0.5)
        & (expected[:, 1] < height - 0.5)
    )
    assert 0.3 < valid.mean() < 0.95  # the view overlaps, but not fully
    assert np.abs(projected[valid] - expected[valid]).max() < 1e-3
    # Out of view <=> dropped (up to the half-pixel band where a lookup lacks neighbours).
    assert not valid[~inside].any()
    assert valid[inside].mean() > 0.97


def test_occluded_points_are_dropped(scene):
    """An object in front of the plane, seen only by camera 1: image0 points whose
    projection falls behind it must be excluded, their neighbours kept."""
    points = dense_points(SIZE)
    pose = relative_pose(scene.e0, scene.e1)
    _, clear = warp_with_depth(points, scene.depth0, scene.k0, pose, scene.k1, scene.depth1)
    box = (slice(10, 30), slice(20, 44))  # rows, cols of image1
    occluded_depth = scene.depth1.copy()
    occluded_depth[box] *= 0.6
    projected, valid = warp_with_depth(points, scene.depth0, scene.k0, pose, scene.k1, occluded_depth)
    x, y = projected[:, 0], projected[:, 1]
    # Lookups use the four pixels around a point: within one pixel of the box is mixed.
    behind = (x >= 20) & (x <= 43) & (y >= 10) & (y <= 29)
    near = (x > 18) & (x < 45) & (y > 8) & (y < 31)
    assert (clear & behind).sum() > 20
    assert not valid[behind].any()
    assert (valid == clear)[~near].all()


def test_missing_depth_is_dropped(scene):
    points = dense_points(SIZE)
    pose = relative_pose(scene.e0, scene.e1)
    depth0 = scene.depth0.copy()
    depth0[:, :20] = 0  # unknown depth (sky, holes) in image0
    _, valid = warp_with_depth(points, depth0, scene.k0, pose, scene.k1, scene.depth1)
    assert not valid[points[:, 0] < 20].any()
    assert valid[points[:, 0] >= 21].any()


def test_sub_pixel_depth_is_exact_on_a_steep_plane():
    """Inverse depth is affine across the image of a plane, so the lookup between
    pixel centres must be exact even where depth changes fast."""
    k = intrinsic_for(SIZE, 40.0)
    normal = np.array([-0.9, 0.3, 1.0])

    def rays(pts: np.ndarray) -> np.ndarray:
        return np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ np.linalg.inv(k).T

    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    depth_map = (PLANE_D / (rays(pixels) @ normal)).reshape(SIZE[1], SIZE[0])
    points = np.random.default_rng(1).uniform([0, 0], [SIZE[0] - 1, SIZE[1] - 1], (200, 2))
    depth, valid = sample_depth(depth_map, points, max_spread=10.0)
    assert valid.all()
    assert np.allclose(depth, PLANE_D / (rays(points) @ normal), rtol=1e-9)


def test_intrinsics_follow_crop_and_resize():
    """A 3D point projected with the new K lands where the crop + resize moves its old pixel."""
    k = np.array([[300.0, 0, 200.3], [0, 310.0, 149.8], [0, 0, 1]])
    crop, scale = (16, 8), (0.25, 0.3)
    points3 = np.random.default_rng(0).uniform([-2, -1.5, 4], [2, 1.5, 9], (50, 3))
    old, _, _ = project(points3, k)
    new, _, _ = project(points3, crop_resize_intrinsics(k, crop, scale))
    moved = (old - crop + 0.5) * scale - 0.5
    assert np.allclose(new, moved, atol=1e-9)


def test_pfm_round_trip_and_orientation(tmp_path):
    depth = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 + 1
    mvs_format.write_pfm(tmp_path / "d.pfm", depth)
    assert np.array_equal(mvs_format.read_pfm(tmp_path / "d.pfm"), depth)
    # A big-endian file written by hand: rows bottom to top, positive scale.
    raw = b"Pf\n2 2\n1.0\n" + np.array([[3, 4], [1, 2]], dtype=">f4").tobytes()
    (tmp_path / "be.pfm").write_bytes(raw)
    assert np.array_equal(mvs_format.read_pfm(tmp_path / "be.pfm"), [[1, 2], [3, 4]])
    (tmp_path / "bad.pfm").write_bytes(b"P6\n2 2\n255\n")
    with pytest.raises(ValueError, match="not a PFM"):
        mvs_format.read_pfm(tmp_path / "bad.pfm")
    (tmp_path / "short.pfm").write_bytes(b"Pf\n4 4\n-1.0\n" + bytes(8))
    with pytest.raises(ValueError, match="truncated"):
        mvs_format.read_pfm(tmp_path / "short.pfm")


def test_cam_and_pair_files_parse(tmp_path):
    cam = tmp_path / "00000003_cam.txt"
    cam.write_text(
        "extrinsic\n1 0 0 0.5\n0 1 0 -1\n0 0 1 2\n0 0 0 1\n\n"
        "intrinsic\n500 0 320\n0 505 240\n0 0 1\n\n425.1 2.5 192 905.3\n"
    )
    camera = mvs_format.read_cam(cam)
    assert camera.extrinsic[:3, 3].tolist() == [0.5, -1, 2]
    assert camera.intrinsic[1, 1] == 505 and camera.intrinsic[0, 2] == 320
    assert (camera.depth_min, camera.depth_interval) == (425.1, 2.5)
    pairs = tmp_path / "pair.txt"
    pairs.write_text("2\n0\n2 1 1500.5 7 30.0\n1\n1 0 1500.5\n")
    assert mvs_format.read_pairs(pairs) == {0: [(1, 1500.5), (7, 30.0)], 1: [(0, 1500.5)]}
    pairs.write_text("2\n0\n3 1 1500.5\n")
    with pytest.raises(ValueError, match="malformed pair file"):
        mvs_format.read_pairs(pairs)
    cam.write_text("intrinsic\n1 0 0\n")
    with pytest.raises(ValueError, match="malformed camera"):
        mvs_format.read_cam(cam)


def test_depth_pairs_dataset(scene, tmp_path):
    folder = scene.write(tmp_path / "scene")
    dataset = DepthPairs([folder], SIZE, STRIDE, DepthConfig())
    assert len(dataset) == 2  # 0 -> 1 and 1 -> 0
    sample = dataset[0]
    assert set(SAMPLE_KEYS) <= set(sample)
    n = (SIZE[1] // STRIDE) * (SIZE[0] // STRIDE)
    assert sample["image0"].shape == (1, SIZE[1], SIZE[0])
    assert sample["match_index1"].shape == (n,) and sample["offset1"].shape == (n, 2)
    valid, fine = sample["coarse_valid"].numpy(), sample["fine_valid"].numpy()
    assert valid.sum() > n // 4 and not (valid & ~fine).any()
    centres = grid_centres((SIZE[1] // STRIDE, SIZE[0] // STRIDE), STRIDE)
    truth = centres[sample["match_index1"].numpy()] + sample["offset1"].numpy()
    expected, _ = warp_points(centres, scene.homography())
    assert np.abs(truth[fine] - expected[fine]).max() < 1e-3
    # Offsets stay within the matched cell.
    assert np.abs(sample["offset1"].numpy()[fine]).max() <= STRIDE / 2 + 1e-6


def test_depth_pairs_resize_moves_geometry(tmp_path):
    """A scene stored at 2x (with a wider aspect, so it is also cropped) loads at the
    training size with targets that follow the homography of the loaded views."""
    big = PlaneScene((144, 96), focal=120.0)
    folder = big.write(tmp_path / "scene")
    view0, view1 = load_view(folder, 0, SIZE), load_view(folder, 1, SIZE)
    assert view0.image.shape == view0.depth.shape == (SIZE[1], SIZE[0])
    # Loaded pixel p comes from source (p + 0.5) / s - 0.5 + crop: rebuild the homography.
    to_small = np.array([[0.5, 0, 0.5 * 0.5 - 0.5 - 0.5 * 8], [0, 0.5, -0.25], [0, 0, 1]])
    homography = to_small @ big.homography() @ np.linalg.inv(to_small)
    grid = (SIZE[1] // STRIDE, SIZE[0] // STRIDE)
    targets = targets_from_depth(view0, view1, grid, STRIDE, tolerance=0.1)
    centres = grid_centres(grid, STRIDE)
    truth = centres[targets.match_index1] + targets.offset1
    expected, _ = warp_points(centres, homography)
    fine = targets.fine_valid
    assert fine.sum() > len(centres) // 4
    # Nearest-neighbour depth is a quarter pixel off the true centre: tiny on a plane.
    assert np.abs(truth[fine] - expected[fine]).max() < 0.05


def test_mixed_pairs_interleave(scene, tmp_path):
    folder = scene.write(tmp_path / "scene")
    depth = DepthPairs([folder], SIZE, STRIDE, DepthConfig())
    marker = {k: None for k in SAMPLE_KEYS}

    class Primary:
        def __len__(self):
            return 10

        def __getitem__(self, index):
            return {**marker, "homography": index}

    mixed = MixedPairs(Primary(), depth, share=0.3)
    secondary = [mixed.is_secondary(i) for i in range(len(mixed))]
    assert sum(secondary) == 3 and not any(secondary[a] and secondary[a + 1] for a in range(9))
    first = mixed[secondary.index(True)]
    assert set(first) == set(SAMPLE_KEYS) and first["image0"] is not None
    assert set(mixed[secondary.index(False)]) == set(SAMPLE_KEYS)
    with pytest.raises(ValueError):
        MixedPairs(Primary(), depth, share=1.5)
