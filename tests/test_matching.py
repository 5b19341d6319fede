"""Per-cell output -> matches, on hand-built backend outputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from coarse_loftr.inference.backends.base import BackendOutput, ModelInfo
from coarse_loftr.inference.config import MatchConfig
from coarse_loftr.inference.matching import cell_centres, extract_matches, usable_cells
from coarse_loftr.inference.preprocess import Letterbox, fit_size

INFO = ModelInfo(input_size=(320, 240), coarse_stride=8, name="test")  # 40 x 30 cells
COLS, ROWS = INFO.grid_size
N = COLS * ROWS
FULL = Letterbox((320, 240), (320, 240), (320, 240))
NO_BORDER = MatchConfig(threshold=0.2, border=0, refine=True)


def output(conf, index, offset=None) -> BackendOutput:
    conf = np.asarray(conf, np.float32)
    offset = np.zeros((N, 2), np.float32) if offset is None else np.asarray(offset, np.float32)
    return BackendOutput(conf, np.asarray(index, np.int64), offset)


def shifted_output(dx_cells: int, dy_cells: int, confidence: float = 0.9) -> BackendOutput:
    """Every image0 cell matched to the cell (dx, dy) cells further, where that exists."""
    rows, cols = np.divmod(np.arange(N), COLS)
    target_c, target_r = cols + dx_cells, rows + dy_cells
    inside = (target_c >= 0) & (target_c < COLS) & (target_r >= 0) & (target_r < ROWS)
    index = np.where(inside, target_r * COLS + target_c, 0)
    return output(np.where(inside, confidence, 0.0), index)


def test_cell_centres_are_centres_not_corners():
    centres = cell_centres(INFO)
    np.testing.assert_array_equal(centres[0], [3.5, 3.5])  # pixels 0..7 -> centre 3.5
    np.testing.assert_array_equal(centres[1], [11.5, 3.5])
    np.testing.assert_array_equal(centres[COLS], [3.5, 11.5])  # row-major
    np.testing.assert_array_equal(centres[N - 1], [315.5, 235.5])


def test_known_shift_gives_the_right_coordinates():
    matches = extract_matches(shifted_output(3, -2), INFO, FULL, FULL, NO_BORDER)
    assert len(matches) == (COLS - 3) * (ROWS - 2)
    np.testing.assert_allclose(
        matches.keypoints1 - matches.keypoints0, np.tile([24.0, -16.0], (len(matches), 1))
    )
    # Every keypoint0 is a cell centre.
    assert np.all(((matches.keypoints0 + 0.5) / 8 - 0.5) % 1 == 0)
    assert matches.keypoints0.dtype == np.float32 and matches.confidence.dtype == np.float32


def test_offset_added_only_when_refining():
    offset = np.tile(np.float32([1.25, -2.5]), (N, 1))
    identity = shifted_output(0, 0)
    out = BackendOutput(identity.conf_max, identity.match_index, offset)
    refined = extract_matches(out, INFO, FULL, FULL, NO_BORDER)
    coarse = extract_matches(out, INFO, FULL, FULL, MatchConfig(threshold=0.2, border=0, refine=False))
    np.testing.assert_allclose(coarse.keypoints1, coarse.keypoints0)
    # This offset keeps every refined point on the image, so nothing is dropped.
    assert len(refined) == len(coarse) == N
    np.testing.assert_allclose(refined.keypoints1 - refined.keypoints0, np.tile([1.25, -2.5], (N, 1)))


def test_refined_point_in_padding_is_dropped():
    offset = np.zeros((N, 2), np.float32)
    offset[N - 1] = [5.0, 0.0]  # last cell + 5 px lands at x = 320.5, off the image
    out = output(np.full(N, 0.9), np.arange(N), offset)
    matches = extract_matches(out, INFO, FULL, FULL, NO_BORDER)
    assert len(matches) == N - 1


def test_threshold_sort_and_top_k():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, N).astype(np.float32)
    out = output(conf, np.arange(N))
    matches = extract_matches(out, INFO, FULL, FULL, MatchConfig(threshold=0.5, border=0))
    assert len(matches) == int((conf >= 0.5).sum())
    assert (matches.confidence >= 0.5).all()
    assert (np.diff(matches.confidence) <= 0).all()
    top = extract_matches(out, INFO, FULL, FULL, MatchConfig(threshold=0.5, border=0, max_matches=10))
    np.testing.assert_array_equal(top.confidence, np.sort(conf)[::-1][:10])
    # The best match's position is that of the most confident cell.
    best = int(np.argmax(conf))
    np.testing.assert_array_equal(top.keypoints0[0], cell_centres(INFO)[best])


def test_border_cells_dropped_in_both_images():
    out = shifted_output(0, 0)
    for border in (1, 2):
        matches = extract_matches(out, INFO, FULL, FULL, MatchConfig(threshold=0.2, border=border))
        assert len(matches) == (COLS - 2 * border) * (ROWS - 2 * border)
        lo = (border + 0.5) * 8 - 0.5
        assert matches.keypoints0.min() >= lo
        assert matches.keypoints0[:, 0].max() <= (COLS - border - 0.5) * 8 - 0.5
    # A match from an inner image0 cell to a border cell of image1 is dropped too.
    index = np.arange(N)
    index[5 * COLS + 5] = 5 * COLS  # cell (5, 5) -> cell (0, 5), on image1's border
    conf = np.zeros(N)
    conf[5 * COLS + 5] = 0.9
    assert len(extract_matches(output(conf, index), INFO, FULL, FULL, MatchConfig())) == 0
    assert len(extract_matches(output(conf, index), INFO, FULL, FULL, NO_BORDER)) == 1


def test_cells_in_padding_dropped_and_border_follows_the_valid_region():
    # 320 x 120 image in a 320 x 240 input: rows 0..14 hold the image.
    half = Letterbox((640, 240), (320, 120), (320, 240))
    usable = usable_cells(INFO, half, border=0).reshape(ROWS, COLS)
    assert usable[:15].all() and not usable[15:].any()
    usable = usable_cells(INFO, half, border=1).reshape(ROWS, COLS)
    assert usable[1:14, 1:-1].all() and usable.sum() == 13 * 38
    # Image0 padded, image1 full: matches only from image0's image rows.
    matches = extract_matches(shifted_output(0, 0), INFO, half, FULL, NO_BORDER)
    assert len(matches) == 15 * COLS
    # Keypoints are in each image's own pixels (image0 is scaled by 2).
    assert matches.keypoints0[:, 1].max() <= 239.5 and matches.keypoints0[:, 0].max() <= 639.5
    np.testing.assert_allclose(matches.keypoints0, (matches.keypoints1 + 0.5) * 2 - 0.5)


def test_partially_covered_cell_counts_by_its_centre():
    # 12 image rows are 1.5 cells: the second cell's centre (y = 11.5) lies on the
    # image's edge (11.5) and counts; with 11 rows it lies in the padding.
    box = Letterbox((320, 12), (320, 12), (320, 240))
    rows_used = usable_cells(INFO, box, 0).reshape(ROWS, COLS)[:, 0]
    assert rows_used.tolist() == [True, True] + [False] * (ROWS - 2)
    box = Letterbox((320, 11), (320, 11), (320, 240))
    rows_used = usable_cells(INFO, box, 0).reshape(ROWS, COLS)[:, 0]
    assert rows_used.tolist() == [True] + [False] * (ROWS - 1)


def test_wrong_sized_output_is_refused():
    with pytest.raises(ValueError, match="grid needs"):
        extract_matches(
            BackendOutput(np.zeros(N - 1, np.float32), np.arange(N - 1), np.zeros((N - 1, 2), np.float32)),
            INFO,
            FULL,
            FULL,
            MatchConfig(),
        )


def test_translation_by_whole_cells_recovers_true_correspondences():
    """Real geometry: image1 is image0 shifted by (2, 1) cells. A perfect backend output
    built from that shift must give exactly the true correspondences x1 = x0 + t, on an
    original image that is letterboxed (scaled by 0.5) into the input."""
    stride = INFO.coarse_stride
    original = (640, 480)
    box = Letterbox(original, fit_size(original, INFO.input_size), INFO.input_size)
    shift_cells = (2, 1)
    # A shift of k cells in the model input is 2 * k * stride pixels in the original.
    true_shift = np.array(shift_cells, np.float64) * stride / np.array(box.scale)

    rng = np.random.default_rng(3)
    image0 = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    shift_px = true_shift.astype(int)
    image1 = np.zeros_like(image0)
    image1[shift_px[1] :, shift_px[0] :] = image0[: 480 - shift_px[1], : 640 - shift_px[0]]

    matches = extract_matches(shifted_output(*shift_cells), INFO, box, box, MatchConfig())
    assert len(matches) == (COLS - 2 - 2) * (ROWS - 2 - 1)
    np.testing.assert_allclose(matches.keypoints1, matches.keypoints0 + true_shift, atol=1e-4)
    # And the pixels there really correspond: image1 at x1 equals image0 at x0 (each
    # keypoint of the 2x scaled original sits between pixels: compare the 2x2 blocks).
    for (x0, y0), (x1, y1) in zip(matches.keypoints0[:50], matches.keypoints1[:50]):
        block0 = image0[int(y0) : int(y0) + 2, int(x0) : int(x0) + 2]
        block1 = image1[int(y1) : int(y1) + 2, int(x1) : int(x1) + 2]
        np.testing.assert_array_equal(block0, block1)
