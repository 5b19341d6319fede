"""Match drawing: layout and its size cap, even sampling, colours, styles, outline, caption,
every image kind. (Its cost per frame is printed by `coarse-loftr bench`, not asserted.)"""

from __future__ import annotations

import numpy as np
import pytest

from coarse_loftr.inference.drawing import (
    MAX_CANVAS_SIDE,
    OUTLIER_BGR,
    OUTLINE_BGR,
    draw_matches,
    even_sample,
    side_by_side_layout,
)

NONE = np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)


def lit(canvas: np.ndarray, background: int = 32) -> np.ndarray:
    """(rows, cols) of pixels that differ from the letterbox background / black image."""
    return np.argwhere(np.abs(canvas.astype(int) - background).sum(axis=2) > 0)


def test_side_by_side_with_heights_matched():
    image0 = np.zeros((100, 80), np.uint16)  # 16-bit gray, shorter
    image1 = np.zeros((200, 50, 4), np.uint8)  # BGRA, taller
    canvas = draw_matches(image0, image1, *NONE, caption=False)
    assert canvas.shape == (200, 160 + 50, 3) and canvas.dtype == np.uint8


def test_a_line_joins_the_matched_points():
    black = np.zeros((60, 100, 3), np.uint8)
    canvas = draw_matches(
        black,
        black,
        np.array([[10.0, 30.0]]),
        np.array([[90.0, 30.0]]),
        np.ones(1),
        style="lines",
        caption=False,
    )
    row = canvas[30]
    # Horizontal line from x=10 in image0 to x=100+90 in image1, nothing elsewhere.
    assert (row[10:191].sum(axis=1) > 0).all()
    assert row[:9].sum() == 0 and row[192:].sum() == 0 and canvas[:25].sum() == 0


def test_scaled_image_keypoints_follow_the_scaling():
    small = np.zeros((50, 50, 3), np.uint8)
    tall = np.zeros((100, 100, 3), np.uint8)
    # image0 is drawn at 2x: its pixel (24.5, 24.5) lands at canvas (49.5, 49.5).
    canvas = draw_matches(
        small,
        tall,
        np.array([[24.5, 24.5]]),
        np.array([[24.5, 24.5]]),
        np.array([0.5]),
        style="lines",
        caption=False,
    )
    points = lit(canvas, background=0)
    left, right = points[points[:, 1].argmin()], points[points[:, 1].argmax()]
    assert abs(left[1] - 49.5) <= 0.5 and abs(left[0] - 49.5) <= 0.5
    assert abs(right[1] - (100 + 24.5)) <= 0.5 and abs(right[0] - 24.5) <= 0.5


@pytest.mark.parametrize(
    "size0,size1", [((1000, 10), (10, 1000)), ((10000, 10), (10, 10000)), ((640, 2), (2, 640))]
)
def test_extreme_aspect_ratios_are_letterboxed_on_a_bounded_canvas(size0, size1):
    # Scaling the wide image to the tall one's height would make a 100000+ pixel canvas.
    image0 = np.full((size0[1], size0[0], 3), 200, np.uint8)
    image1 = np.full((size1[1], size1[0], 3), 200, np.uint8)
    kpts0 = np.array([[size0[0] / 2 - 0.5, size0[1] / 2 - 0.5]])
    kpts1 = np.array([[size1[0] / 2 - 0.5, size1[1] / 2 - 0.5]])
    canvas = draw_matches(image0, image1, kpts0, kpts1, np.ones(1), style="points", caption=False)
    assert max(canvas.shape[:2]) <= MAX_CANVAS_SIDE
    layout = side_by_side_layout(size0, size1)
    assert canvas.shape[:2] == (layout.size[1], layout.size[0])
    # Each image keeps its aspect ratio (within a pixel of rounding), centred in its panel.
    for (width, height), (drawn_w, drawn_h), scale in zip((size0, size1), layout.drawn, layout.scales):
        assert abs(drawn_w - width * scale) <= 1 and abs(drawn_h - height * scale) <= 1
    x, y = layout.offsets[0]
    w, h = layout.drawn[0]
    assert (canvas[y : y + h, x : x + w] != 32).all(axis=2).any()  # image0 is drawn there
    assert (canvas[: max(0, y - 10), x : x + w] == 32).all()  # letterbox above it
    # The keypoint dots sit at the mapped centres.
    for which, points in ((0, kpts0), (1, kpts1)):
        cx, cy = np.rint(layout.to_canvas(which, points)[0]).astype(int)
        assert tuple(canvas[cy, cx]) != (200, 200, 200) and tuple(canvas[cy, cx]) != (32, 32, 32)


def test_max_side_shrinks_large_pairs():
    big = np.zeros((3000, 4000), np.uint8)
    canvas = draw_matches(big, big, *NONE, max_side=1000)
    assert canvas.shape == (375, 1000, 3)  # two 4000x3000 side by side, shrunk 8x


def test_even_sample_spreads_over_the_image():
    rng = np.random.default_rng(0)
    # 2000 confident matches crowd the top-left corner, 200 weaker ones cover the rest.
    crowd = rng.uniform(0, 100, (2000, 2))
    spread = rng.uniform(0, [640, 480], (200, 2))
    points = np.concatenate([crowd, spread])
    conf = np.concatenate([np.full(2000, 0.99), np.full(200, 0.5)])
    chosen = even_sample(points, conf, (640, 480), 150)
    assert len(chosen) == 150 and len(set(chosen.tolist())) == 150
    picked = points[chosen]
    # Every quadrant is represented, and the corner does not take most of the sample.
    for qx in (0, 1):
        for qy in (0, 1):
            inside = (picked[:, 0] >= qx * 320) & (picked[:, 0] < (qx + 1) * 320)
            inside &= (picked[:, 1] >= qy * 240) & (picked[:, 1] < (qy + 1) * 240)
            assert inside.sum() >= 10
    assert (np.all(picked < 100, axis=1)).sum() < 30
    # The top-N by confidence would have taken the corner only.
    assert even_sample(points, conf, (640, 480), 5000).tolist() == list(range(2200))


def test_at_most_max_lines_are_drawn():
    black = np.zeros((200, 200, 3), np.uint8)
    ys = np.arange(5, 195, 10, dtype=np.float64)
    points = np.c_[np.full(len(ys), 100.0), ys]
    canvas = draw_matches(
        black, black, points, points, np.linspace(1, 0.5, len(ys)), max_lines=4, caption=False
    )
    drawn = [canvas[int(y), 200 + 50].sum() > 0 for y in ys]
    assert sum(drawn) == 4


def test_colours_follow_position_and_outliers_are_red():
    black = np.zeros((60, 200, 3), np.uint8)
    points = np.array([[5.0, 10.0], [195.0, 10.0]])
    canvas = draw_matches(black, black, points, points, np.ones(2), style="points", caption=False)
    left, right = canvas[10, 5].astype(int), canvas[10, 195].astype(int)
    assert left.sum() > 0 and right.sum() > 0 and not np.array_equal(left, right)
    both = draw_matches(
        black, black, points, points, np.ones(2), inliers=np.array([True, False]), caption=False
    )
    assert tuple(both[10, 200 + 195]) == OUTLIER_BGR
    inlier = both[10, 200 + 5].astype(int)
    assert inlier.sum() > 0 and tuple(inlier) != OUTLIER_BGR
    assert not (inlier[2] > 150 and inlier[0] < 80 and inlier[1] < 80)  # an inlier is never red


def test_styles_lines_points_both():
    black = np.zeros((60, 100, 3), np.uint8)
    args = black, black, np.array([[10.0, 30.0]]), np.array([[90.0, 30.0]]), np.ones(1)
    lines = draw_matches(*args, style="lines", caption=False)
    points = draw_matches(*args, style="points", caption=False)
    both = draw_matches(*args, style="both", caption=False)
    middle = 100  # canvas column halfway along the line
    assert lines[30, middle].sum() > 0 and points[30, middle].sum() == 0 and both[30, middle].sum() > 0
    assert points[29, 10].sum() > 0 and lines[29, 10].sum() == 0  # a dot is wider than a line
    with pytest.raises(ValueError, match="style"):
        draw_matches(*args, style="arrows")


def test_outline_of_the_reference_and_lost():
    grey = np.full((120, 160, 3), 90, np.uint8)
    shift = np.array([[0.5, 0, 40], [0, 0.5, 30], [0, 0, 1.0]])  # a's border -> a box inside b
    canvas = draw_matches(grey, grey, *NONE, homography=shift, outline=True, caption=False)
    outline = np.all(canvas == OUTLINE_BGR, axis=2)
    rows, cols = np.nonzero(outline)
    assert cols.min() >= 160 + 35 and cols.max() <= 160 + 125 and rows.min() >= 25 and rows.max() <= 95
    assert outline[:, :160].sum() == 0
    # A border that maps beyond image1 stays inside image1's panel.
    beyond = np.array([[1.0, 0, -80], [0, 1.0, 10], [0, 0, 1.0]])
    canvas = draw_matches(grey, grey, *NONE, homography=beyond, outline=True, caption=False)
    assert np.array_equal(canvas[:, :160], grey) and np.all(canvas[:, 160:] == OUTLINE_BGR, axis=2).sum() > 50
    lost = draw_matches(grey, grey, *NONE, homography=None, outline=True, caption=False)
    assert np.all(lost[:, 160:] == OUTLIER_BGR, axis=2).any() and np.all(lost[:, :160] == 90)
    assert np.array_equal(
        draw_matches(grey, grey, *NONE, caption=False), np.concatenate([grey, grey], axis=1)
    )


def test_caption_with_counts_and_text():
    black = np.zeros((200, 300, 3), np.uint8)
    points = np.array([[50.0, 50.0], [250.0, 150.0]])
    plain = draw_matches(black, black, points, points, np.ones(2), caption=False, style="lines")
    captioned = draw_matches(black, black, points, points, np.ones(2), inliers=np.array([True, False]))
    corner = (slice(170, 200), slice(0, 200))
    assert plain[corner].sum() == 0 and captioned[corner].sum() > 0
    text = draw_matches(black, black, *NONE, text="30.0 FPS", caption=False)
    assert text[150:200, :80].sum() > 0


def test_mismatched_lengths_are_refused():
    black = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError):
        draw_matches(black, black, np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError):
        draw_matches(black, black, np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), inliers=np.ones(2, bool))
