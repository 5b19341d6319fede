"""Per-cell network output -> matches in each image's own pixels.

A coarse cell (col, row) of stride s covers model-input pixels [col*s, (col+1)*s) and
its centre is at ((col + 0.5) * s - 0.5, (row + 0.5) * s - 0.5) with pixel centres at
integers; using the corner instead biases every keypoint by half a cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends.base import BackendOutput, ModelInfo
from .config import MatchConfig
from .preprocess import Letterbox


@dataclass(frozen=True)
class Matches:
    """Matches of one pair, most confident first.

    keypoints0, keypoints1: (N, 2) float32 x, y in pixels of the original image0 / image1;
    confidence: (N,) float32 dual-softmax confidence in [0, 1].
    """

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.confidence)


def grid_centres(grid_hw: tuple[int, int], stride: int) -> np.ndarray:
    """(N, 2) float64 x, y centres of a row-major grid of `stride`-pixel cells with
    `grid_hw` = (rows, cols), in model-input pixels."""
    rows, cols = grid_hw
    index = np.arange(rows * cols)
    return np.stack([(index % cols + 0.5) * stride - 0.5, (index // cols + 0.5) * stride - 0.5], axis=1)


def cell_centres(info: ModelInfo) -> np.ndarray:
    """(N, 2) float64 centres of the model's coarse cells, row-major, in model-input pixels."""
    cols, rows = info.grid_size
    return grid_centres((rows, cols), info.coarse_stride)


def usable_cells(info: ModelInfo, box: Letterbox, border: int) -> np.ndarray:
    """(N,) bool: cells whose centre lies on the image (not in padding) and that are at
    least `border` cells away from the edges of that region."""
    cols, rows = info.grid_size
    on_image = box.in_valid_region(cell_centres(info)).reshape(rows, cols)
    valid_cols = int(on_image[0].sum())  # padding is right / bottom only, so the
    valid_rows = int(on_image[:, 0].sum())  # image covers a top-left block of cells
    mask = np.zeros((rows, cols), dtype=bool)
    border = max(0, border)
    mask[border : max(border, valid_rows - border), border : max(border, valid_cols - border)] = True
    return mask.reshape(-1)


def extract_matches(
    output: BackendOutput,
    info: ModelInfo,
    letterbox0: Letterbox,
    letterbox1: Letterbox,
    config: MatchConfig = MatchConfig(),
) -> Matches:
    """Threshold, clean, sort and map one pair's per-cell output.

    output: the backend's per-cell result for image0's N0 cells; letterbox0/1: how
    each original image sits in the model input. A match is kept when its confidence
    is at least `config.threshold` and both cells are usable (`usable_cells`); image1's
    position is the matched cell's centre plus `offset1` when `config.refine` (and is
    dropped if that lands in padding). The `config.max_matches` most confident are
    returned, mapped to each original image's pixels.
    """
    cols, rows = info.grid_size
    conf = np.asarray(output.conf_max, dtype=np.float32).reshape(-1)
    index1 = np.asarray(output.match_index).reshape(-1).astype(np.int64)
    offset1 = np.asarray(output.offset1, dtype=np.float32).reshape(-1, 2)
    if not (len(conf) == len(index1) == len(offset1) == cols * rows):
        raise ValueError(
            f"backend output has {len(conf)} / {len(index1)} / {len(offset1)} "
            f"cells; the {cols}x{rows} grid needs {cols * rows}"
        )
    centres = cell_centres(info)
    in_range = (index1 >= 0) & (index1 < cols * rows)
    index1 = np.where(in_range, index1, 0)
    keep = (
        in_range
        & (conf >= config.threshold)
        & usable_cells(info, letterbox0, config.border)
        & usable_cells(info, letterbox1, config.border)[index1]
    )
    index0 = np.flatnonzero(keep)
    points0 = centres[index0]
    points1 = centres[index1[index0]]
    if config.refine:
        points1 = points1 + offset1[index0]
        on_image = letterbox1.in_valid_region(points1)
        index0, points0, points1 = index0[on_image], points0[on_image], points1[on_image]
    order = np.argsort(-conf[index0], kind="stable")[: config.max_matches]
    return Matches(
        keypoints0=letterbox0.to_original(points0[order]).astype(np.float32),
        keypoints1=letterbox1.to_original(points1[order]).astype(np.float32),
        confidence=conf[index0[order]],
    )
