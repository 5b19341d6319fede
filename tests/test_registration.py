"""Robust geometry from synthetic correspondences with outliers, and the warp overlay."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from coarse_loftr.inference.config import RegistrationConfig
from coarse_loftr.inference.matching import Matches
from coarse_loftr.inference.registration import estimate_fundamental, estimate_homography, warp_blend

H_TRUE = np.array([[0.9, -0.12, 30.0], [0.08, 1.05, -12.0], [1e-4, -5e-5, 1.0]])


def project(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.c_[points, np.ones(len(points))] @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def synthetic(count: int, outlier_ratio: float, noise_px: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    points0 = rng.uniform([0, 0], [640, 480], size=(count, 2))
    points1 = project(H_TRUE, points0) + rng.normal(0, noise_px, size=(count, 2))
    outliers = rng.random(count) < outlier_ratio
    points1[outliers] = rng.uniform([0, 0], [640, 480], size=(int(outliers.sum()), 2))
    conf = np.ones(count, np.float32)
    return Matches(points0.astype(np.float32), points1.astype(np.float32), conf), outliers


def test_homography_recovered_with_outliers():
    matches, outliers = synthetic(400, outlier_ratio=0.4, noise_px=0.5)
    result = estimate_homography(matches)
    assert result.matrix is not None and result.matrix.shape == (3, 3)
    assert result.matrix.dtype == np.float64
    corners = np.array([[0, 0], [639, 0], [639, 479], [0, 479]], np.float64)
    error = np.linalg.norm(project(result.matrix, corners) - project(H_TRUE, corners), axis=1)
    assert error.max() < 2.0
    # Inliers are (nearly) exactly the true correspondences.
    assert result.inliers.dtype == bool and result.inliers.shape == (400,)
    assert result.num_inliers == int(result.inliers.sum())
    assert (result.inliers & outliers).sum() <= 3
    assert (~result.inliers & ~outliers).sum() <= 5


def test_threshold_override_changes_inlier_count():
    matches, _ = synthetic(300, outlier_ratio=0.0, noise_px=3.0, seed=1)
    strict = estimate_homography(matches, threshold_px=0.5)
    loose = estimate_homography(matches, RegistrationConfig(threshold_px=8.0))
    assert strict.num_inliers < loose.num_inliers


def test_too_few_matches_gives_no_matrix():
    matches, _ = synthetic(3, 0.0, 0.0)
    result = estimate_homography(matches)
    assert result.matrix is None and result.num_inliers == 0 and result.inliers.shape == (3,)
    matches, _ = synthetic(7, 0.0, 0.0)
    assert estimate_fundamental(matches).matrix is None
    empty = Matches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32))
    assert estimate_homography(empty).matrix is None


def test_degenerate_points_give_no_matrix():
    points = np.full((20, 2), 10.0, np.float32)
    result = estimate_homography(Matches(points, points, np.ones(20, np.float32)))
    assert result.matrix is None


def test_fundamental_satisfies_epipolar_constraint():
    rng = np.random.default_rng(2)
    points3d = rng.uniform([-2, -2, 4], [2, 2, 8], size=(300, 3))
    camera = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    angle = 0.1
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    translation = np.array([0.5, 0.05, 0.0])
    view0 = points3d @ camera.T
    view1 = (points3d @ rotation.T + translation) @ camera.T
    points0 = view0[:, :2] / view0[:, 2:]
    points1 = view1[:, :2] / view1[:, 2:]
    points1[:60] = rng.uniform([0, 0], [640, 480], size=(60, 2))  # outliers
    result = estimate_fundamental(
        Matches(points0.astype(np.float32), points1.astype(np.float32), np.ones(300, np.float32))
    )
    assert result.matrix is not None and result.matrix.shape == (3, 3)
    good = np.c_[points1[60:], np.ones(240)], np.c_[points0[60:], np.ones(240)]
    lines = good[1] @ result.matrix.T  # epipolar lines in image1
    distance = np.abs((good[0] * lines).sum(1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert np.median(distance) < 0.5
    assert result.inliers[60:].mean() > 0.95 and result.inliers[:60].mean() < 0.1


def test_bad_input_types():
    with pytest.raises(TypeError):
        estimate_homography(np.zeros((5, 2)))


def test_warp_blend_aligns_and_blends():
    rng = np.random.default_rng(3)
    image0 = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (5, 5), 0)
    shift = np.array([[1.0, 0, 40], [0, 1.0, 20], [0, 0, 1]])
    image1 = cv2.warpPerspective(image0, shift, (320, 240))
    blended = warp_blend(image0, image1, shift)
    assert blended.shape == (240, 320, 3) and blended.dtype == np.uint8
    # Where image0 lands, the blend of two aligned images is the image itself.
    np.testing.assert_allclose(blended[30:, 50:].astype(int), image1[30:, 50:].astype(int), atol=1)
    # A wrong homography blends two different images: visibly different from image1.
    wrong = warp_blend(image0, image1, np.eye(3))
    assert np.abs(wrong[30:, 50:].astype(int) - image1[30:, 50:].astype(int)).mean() > 5


def test_warp_blend_any_image_kind():
    gray16 = np.full((50, 60), 40000, np.uint16)
    bgra = np.zeros((70, 80, 4), np.uint8)
    out = warp_blend(gray16, bgra, np.eye(3))
    assert out.shape == (70, 80, 3) and out.dtype == np.uint8
    assert abs(int(out[10, 10, 0]) - (40000 >> 8) / 2) <= 1  # 50/50 with black
    assert (out[60, 70] == 0).all()  # outside the warp: image1 alone


def test_warp_blend_is_shrunk_to_max_side_and_stays_aligned():
    rng = np.random.default_rng(4)
    image0 = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (9, 9), 0)
    shift = np.array([[1.0, 0, 40], [0, 1.0, 20], [0, 0, 1]])
    image1 = cv2.warpPerspective(image0, shift, (320, 240))
    small = warp_blend(image0, image1, shift, max_side=160)
    assert small.shape == (120, 160, 3)
    # Still aligned: the blend equals image1 shrunk the same way.
    expected = cv2.resize(image1, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(small[20:, 30:].astype(int) - expected[20:, 30:].astype(int)).mean() < 3
