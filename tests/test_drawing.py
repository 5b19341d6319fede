"""Match drawing: layout, colours, outlier dimming, every image kind."""

from __future__ import annotations

import time

import numpy as np
import pytest

from coarse_loftr.inference.drawing import draw_matches


def test_side_by_side_with_heights_matched():
    image0 = np.zeros((100, 80), np.uint16)  # 16-bit gray, shorter
    image1 = np.zeros((200, 50, 4), np.uint8)  # BGRA, taller
    canvas = draw_matches(image0, image1, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
    assert canvas.shape == (200, 160 + 50, 3) and canvas.dtype == np.uint8


def test_a_line_joins_the_matched_points():
    black = np.zeros((60, 100, 3), np.uint8)
    canvas = draw_matches(black, black, np.array([[10.0, 30.0]]), np.array([[90.0, 30.0]]), np.array([1.0]))
    row = canvas[30]
    # Horizontal line from x=10 in image0 to x=100+90 in image1, nothing elsewhere.
    assert (row[10:191].sum(axis=1) > 0).all()
    assert row[:9].sum() == 0 and row[192:].sum() == 0 and canvas[:25].sum() == 0


def test_scaled_image_keypoints_follow_the_scaling():
    small = np.zeros((50, 50, 3), np.uint8)
    tall = np.zeros((100, 100, 3), np.uint8)
    # image0 is drawn at 2x: its pixel (24.5, 24.5) lands at canvas (49.5, 49.5).
    canvas = draw_matches(small, tall, np.array([[24.5, 24.5]]), np.array([[24.5, 24.5]]), np.array([0.5]))
    lit = np.argwhere(canvas.sum(axis=2) > 0)  # (row, col)
    left, right = lit[lit[:, 1].argmin()], lit[lit[:, 1].argmax()]
    assert abs(left[1] - 49.5) <= 0.5 and abs(left[0] - 49.5) <= 0.5
    assert abs(right[1] - (100 + 24.5)) <= 0.5 and abs(right[0] - 24.5) <= 0.5


def test_confidence_colours_and_dimmed_outliers():
    black = np.zeros((40, 40, 3), np.uint8)
    points = np.array([[5.0, 10.0], [5.0, 30.0]])
    low_high = draw_matches(black, black, points, points, np.array([0.05, 0.95]))
    assert not np.array_equal(low_high[10, 20], low_high[30, 20])  # different colours
    both = draw_matches(black, black, points, points, np.array([0.9, 0.9]), inliers=np.array([True, False]))
    inlier_px, outlier_px = both[10, 20].astype(int), both[30, 20].astype(int)
    assert outlier_px.sum() > 0 and outlier_px.sum() * 2 < inlier_px.sum()


def test_max_lines_and_text():
    black = np.zeros((60, 60, 3), np.uint8)
    rows = np.arange(5, 55, 10, dtype=np.float64)
    points = np.c_[np.full(5, 30.0), rows]
    canvas = draw_matches(black, black, points, points, np.linspace(1, 0.5, 5), max_lines=2)
    drawn = [canvas[int(y), 60 + 10].sum() > 0 for y in rows]
    assert drawn == [True, True, False, False, False]
    with_text = draw_matches(black, black, points[:0], points[:0], np.zeros(0), text="30.0 FPS")
    assert with_text[:30, :60].sum() > 0


def test_mismatched_lengths_are_refused():
    black = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError):
        draw_matches(black, black, np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError):
        draw_matches(black, black, np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), inliers=np.ones(2, bool))


def test_fast_enough_for_video():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    points0, points1 = rng.uniform(0, [640, 480], (2, 500, 2))
    conf, inliers = rng.random(500), rng.random(500) < 0.7
    draw_matches(image, image, points0, points1, conf, inliers)
    start = time.perf_counter()
    for _ in range(10):
        draw_matches(image, image, points0, points1, conf, inliers, text="25 FPS")
    # About 1 ms here; a generous bound for a loaded 2-core machine.
    assert (time.perf_counter() - start) / 10 < 0.03
