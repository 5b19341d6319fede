"""The network's pieces against slow, obvious re-computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coarse_loftr.inference.checkpoint import load_checkpoint
from coarse_loftr.inference.config import get_preset
from coarse_loftr.inference.matching import grid_centres
from coarse_loftr.inference.model import CoarseLoFTR
from coarse_loftr.inference.model.position_encoding import PositionEncodingSine
from coarse_loftr.inference.model.transformer import linear_attention
from coarse_loftr.inference.paths import WEIGHTS_DIR

GRID = (6, 8)  # coarse rows, cols
STRIDE = 8


@pytest.fixture(scope="module")
def student() -> CoarseLoFTR:
    torch.manual_seed(0)
    return CoarseLoFTR(get_preset("student")).eval()


def test_torch_cell_centres_match_the_runtime_convention(student):
    np.testing.assert_allclose(
        student.cell_centres(GRID, torch.device("cpu")).numpy(), grid_centres(GRID, STRIDE)
    )


def test_first_level_is_a_soft_argmax_over_the_window_around_the_matched_cell(student):
    head = student.fine_head  # stride 4: 2 fine pixels per cell, window 6
    rows, cols = GRID
    fine0, fine1 = torch.randn(2, 1, head.proj[-1].out_channels, rows * 2, cols * 2)
    index1 = torch.randint(0, rows * cols, (1, rows * cols))
    offset, _ = head(head.cell_descriptors(fine0), fine1, index1, GRID)
    padded = F.pad(fine1[0], (2, 2, 2, 2))
    channels = fine0.shape[1]
    for i in (0, 13, rows * cols - 1):
        iy, ix = divmod(i, cols)
        jy, jx = divmod(int(index1[0, i]), cols)
        desc = fine0[0, :, 2 * iy : 2 * iy + 2, 2 * ix : 2 * ix + 2].mean((1, 2))
        window = padded[:, 2 * jy : 2 * jy + 6, 2 * jx : 2 * jx + 6].reshape(channels, -1)
        weights = ((desc @ window) / math.sqrt(channels)).softmax(0)
        steps = torch.arange(6.0) - 2.5
        expected = (
            torch.stack(
                [(weights.reshape(6, 6).sum(0) * steps).sum(), (weights.reshape(6, 6).sum(1) * steps).sum()]
            )
            * 4
        )
        torch.testing.assert_close(offset[0, i], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("level", "stride", "cells"),
    [(2, 2, (0, 7, 30)), (3, 1, (0, 9, 47))],  # level 3: the input's own pixels
)
def test_later_levels_search_around_the_nearest_pixel_of_their_stride(student, level, stride, cells):
    """Levels 2 and 3 (window 5) against a re-computation: the image0 descriptor is the
    mean of the 2x2 pixels of the level's stride around the cell centre (8c + 3.5 input
    px), image1's window sits on the pixel nearest to the previous estimate."""
    head = student.fine2_head if level == 2 else student.fine3_head
    assert head is not None and head.stride == stride and head.window == 5
    per_cell = STRIDE // stride
    rows, cols = GRID
    height, width = rows * per_cell, cols * per_cell
    channels = head.proj[-1].out_channels
    feat0, feat1 = torch.randn(2, 1, channels, height, width)
    points1 = torch.rand(1, rows * cols, 2) * torch.tensor([cols * 8 - 1.0, rows * 8 - 1.0])
    refined, centre, _ = head(head.cell_descriptors(feat0), feat1, points1)
    low = per_cell // 2 - 1  # first of the two pixels around a cell centre
    for i in cells:
        iy, ix = divmod(i, cols)
        y0, x0 = per_cell * iy + low, per_cell * ix + low
        desc = feat0[0, :, y0 : y0 + 2, x0 : x0 + 2].mean((1, 2))
        u, v = (round(float(points1[0, i, k] + 0.5) / stride - 0.5) for k in range(2))
        assert (u, v) == tuple(centre[0, i].tolist())
        taps = [(dx, dy) for dy in range(-2, 3) for dx in range(-2, 3)]
        window = torch.stack(
            [feat1[0, :, min(max(v + dy, 0), height - 1), min(max(u + dx, 0), width - 1)] for dx, dy in taps],
            1,
        )
        weights = ((desc @ window) / math.sqrt(channels)).softmax(0)
        expected = torch.tensor([u, v], dtype=torch.float32) + weights @ torch.tensor(taps).float()
        torch.testing.assert_close(refined[0, i], (expected + 0.5) * stride - 0.5, atol=1e-4, rtol=0)


def test_predict_chains_the_three_levels(student):
    """The deployed offset is level 3 applied to level 2's output, itself started from level 1's."""
    torch.manual_seed(3)
    image0, image1 = torch.rand(2, 1, 1, 48, 64)
    with torch.no_grad():
        _, index, offset = student.predict(image0, image1)
        out = student(image0, image1)
        heads = student.fine_head, student.fine2_head, student.fine3_head
        first, _ = heads[0](heads[0].cell_descriptors(out.fine0), out.fine1, index, out.grid_hw)
        centres = student.cell_centres(out.grid_hw, image0.device)[index]
        second, _, _ = heads[1](heads[1].cell_descriptors(out.fine2_0), out.fine2_1, centres + first)
        third, _, _ = heads[2](heads[2].cell_descriptors(out.fine3_0), out.fine3_1, second)
    torch.testing.assert_close(offset, third - centres)
    assert not torch.allclose(third, second)  # the third level moved the points


def test_third_level_describes_image0_cells_from_their_own_pixels():
    """In eval mode the third level reads a 6x6 patch of each cell's 8x8 pixels; its
    descriptors are the dense map's at the cell centres, border cells included (the dense
    convs' zero padding lies outside every patch). The shipped weights, so batch norm is
    not the identity. Level 2 reaches past its cells and training needs whole maps: both
    stay dense."""
    model, _ = load_checkpoint(WEIGHTS_DIR / "student.pt")
    head = model.eval().fine3_head
    torch.manual_seed(5)
    images = torch.rand(2, 1, 48, 64)
    with torch.no_grad():
        dense = head.proj(images)
        centre = sum(dense[:, :, y::8, x::8] for y in (3, 4) for x in (3, 4)) / 4
        expected = centre.flatten(2).transpose(1, 2)  # (B, N0, C)
        assert head.reads_patches()
        torch.testing.assert_close(head.describe_cells(images), expected, atol=1e-5, rtol=1e-5)
    assert not model.fine2_head.reads_patches()
    assert not head.train().reads_patches()


@pytest.mark.parametrize("level", [2, 3])
def test_on_a_16_pixel_grid_both_later_levels_describe_cells_from_their_own_pixels(level):
    """With 16-pixel cells the second level's reach (a 6x6 patch of its stride-2 pixels
    around a cell's 2x2 centre) fits inside the cell too, so `student16` reads patches at
    both levels. Random batch-norm statistics, so that it is not the identity."""
    torch.manual_seed(6)
    model = CoarseLoFTR(get_preset("student16"))
    head = model.fine2_head if level == 2 else model.fine3_head
    for layer in head.proj.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.data.uniform_(0.5, 1.5)
    model.eval()
    channels = 1 if level == 3 else model.config.backbone.widths[0]
    ratio = 16 // head.stride
    source = torch.rand(2, channels, 3 * ratio, 4 * ratio)
    with torch.no_grad():
        dense = head.proj(source)
        middle = (ratio // 2 - 1, ratio // 2)
        centre = sum(dense[:, :, y::ratio, x::ratio] for y in middle for x in middle) / 4
        assert head.reads_patches()
        torch.testing.assert_close(
            head.describe_cells(source), centre.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5
        )


def test_linear_attention_equals_its_quadratic_form():
    torch.manual_seed(1)
    q, k, v = torch.randn(3, 2, 1, 7, 4)
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    scores = phi_q @ phi_k.transpose(2, 3)  # (B, h, L, S), positive
    expected = (scores / scores.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(linear_attention(q, k, v), expected, atol=1e-5, rtol=1e-5)


def test_published_divisor_variant_of_the_sine_encoding():
    pe = PositionEncodingSine(32, (4, 5), temp_bug_fix=False).pe[0]
    # (-ln(10000) / 32) // 2 = -1: channel 4k encodes sin(x * e^(-2k)), x counted from 1.
    x = torch.arange(1, 6, dtype=torch.float32)
    torch.testing.assert_close(pe[4, 0], torch.sin(x * math.exp(-2.0)))
    torch.testing.assert_close(pe[3, :, 0], torch.cos(torch.arange(1, 5.0)))


def test_predict_returns_mutual_nearest_neighbours_only(student):
    torch.manual_seed(2)
    image0, image1 = torch.rand(2, 1, 1, 48, 64)
    with torch.no_grad():
        conf_max, index, _ = student.predict(image0, image1)
        conf = student(image0, image1).conf_matrix[0]
    for i in range(conf.shape[0]):
        j = int(index[0, i])
        mutual = int(conf[:, j].argmax()) == i
        assert (conf_max[0, i] > 0) == mutual


@pytest.mark.parametrize("preset", ["student", "student16", "teacher", "coarse_loftr_trt"])
def test_a_reference_described_once_gives_predicts_outputs(preset):
    """The stream's split (image0's half once, then each frame) is `predict` itself, for
    three (on a 1/8 and a 1/16 grid), one and no refinement levels; another image0 gives
    other outputs."""
    torch.manual_seed(4)
    model = CoarseLoFTR(get_preset(preset)).eval()
    stride = model.config.coarse_stride
    image0, image1, other = torch.rand(3, 1, 1, 6 * stride, 8 * stride)
    with torch.no_grad():
        reference = model.describe_image0(image0)
        assert len(reference.descriptors0) == len(model.refinement_heads())
        assert reference.tokens0.shape == (1, 48, model.config.d_model)
        # A batch of one image convolves in another order than the pair's batch of two:
        # float rounding, which the 16-pixel cells of the expectation scale up.
        for expected, split in zip(model.predict(image0, image1), model.predict_from(reference, image1)):
            torch.testing.assert_close(split, expected, rtol=1e-4, atol=1e-4)
        changed = model.predict_from(model.describe_image0(other), image1)
    assert not torch.allclose(changed[0], model.predict(image0, image1)[0])
