"""Sub-cell refinement of coarse matches.

Ways to place a match below the coarse grid, all computed inside the graph so a
backend returns a few numbers per cell instead of the confidence matrix:

* `FineHead` (learned): correlates the stride-`fine_stride` feature of each image0 cell
  with a window of image1's fine features around the matched cell, and takes the
  soft-argmax as the offset.
* `LocalRefiner` (learned, optional second and third levels): the same soft-argmax on
  a finer feature map, in a small window around the nearest pixel to the previous
  level's estimate.
* `confidence_expectation` (any model, no training): the confidence-weighted mean
  position over the 3x3 cells around the matched one.

`FineHead` and `confidence_expectation` return offsets in model-input pixels from the
centre of the matched image1 cell, `LocalRefiner` refined positions in model-input pixels.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def _flatten_batch(index: torch.Tensor, items_per_batch: int) -> torch.Tensor:
    """Per-batch row indices (B, ...) -> indices into the batch-flattened rows.

    A static branch when traced: the deployed graph (batch 1) needs no Range op.
    """
    batch = index.shape[0]
    if batch == 1:
        return index
    offsets = torch.arange(batch, device=index.device) * items_per_batch
    return index + offsets.reshape(batch, *([1] * (index.dim() - 1)))


def projection(in_ch: int, dim: int, kernel: int, depth: int) -> nn.Sequential:
    """Backbone stage output -> refinement features: `depth` conv-BN-ReLU layers (the
    first with `kernel`, the others 3x3) and a final pointwise conv. With depth 1 the
    parameter names are those of the single-layer projection of earlier checkpoints."""
    layers: list[nn.Module] = []
    for index in range(depth):
        size = kernel if index == 0 else 3
        layers += [
            nn.Conv2d(in_ch if index == 0 else dim, dim, kernel_size=size, padding=size // 2, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.Conv2d(dim, dim, kernel_size=1, bias=False))
    return nn.Sequential(*layers)


class RefinementLevel(nn.Module):
    """What the model asks of every refinement level besides its forward: the projected
    map of an image (`features`), image0's descriptor per coarse cell from that map
    (`cell_descriptors`) or from the level's source itself (`describe_cells`)."""

    proj: nn.Sequential

    def features(self, source: torch.Tensor) -> torch.Tensor:
        """source: (B, C_in, H, W) backbone stage output or input image -> (B, C, H, W)."""
        return self.proj(source)

    @abstractmethod
    def cell_descriptors(self, map0: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) projected map -> (B, N0, C), one descriptor per coarse cell."""

    def reads_patches(self) -> bool:
        """Whether `describe_cells` computes on the cells' own pixels rather than the map."""
        return False

    def describe_cells(self, source: torch.Tensor) -> torch.Tensor:
        """source (B, C_in, H, W) -> (B, N0, C): `cell_descriptors(features(source))`."""
        return self.cell_descriptors(self.features(source))


class FineHead(RefinementLevel):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        bb = config.backbone
        assert bb.fine_stage is not None and bb.fine_stride is not None
        in_ch = bb.widths[bb.fine_stage - 1]
        self.ratio = bb.coarse_stride // bb.fine_stride  # fine pixels per coarse cell side
        self.window = config.fine_window
        self.fine_stride = bb.fine_stride
        if (self.window - self.ratio) % 2:
            raise ValueError("fine_window minus the coarse/fine ratio must be even")
        self.pad = (self.window - self.ratio) // 2
        self.proj = projection(in_ch, config.fine_dim, config.fine_kernel, config.fine_depth)
        # Window offsets, in fine pixels from the centre of a coarse cell, row-major.
        half = (self.window - 1) / 2
        steps = torch.arange(self.window, dtype=torch.float32) - half
        grid_y, grid_x = torch.meshgrid(steps, steps, indexing="ij")
        self.register_buffer(
            "window_offsets", torch.stack([grid_x, grid_y], -1).reshape(-1, 2), persistent=False
        )

    def cell_descriptors(self, fine0: torch.Tensor) -> torch.Tensor:
        """(B, C, Hf, Wf) projected fine features -> (B, N0, C): each coarse cell's mean."""
        return F.avg_pool2d(fine0, self.ratio, self.ratio).flatten(2).transpose(1, 2)

    def forward(
        self, desc0: torch.Tensor, fine1: torch.Tensor, index1: torch.Tensor, grid_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets of image0 cells' matches inside image1.

        desc0: (B, N0, C) image0's cell descriptors (`cell_descriptors`); fine1: (B, C,
        Hf, Wf) image1's projected fine features; index1: (B, N0) int64 matched cell of
        image1 for each image0 cell. Returns (offset (B, N0, 2) in input
        pixels from the matched cell's centre, logits (B, N0, window*window)).

        Each window is gathered from the zero-padded map in channels-last layout: the
        padding makes every tap a valid index, so the flat tap indices are the window's
        top-left pixel plus constant steps, integer arithmetic only, and the gather copies
        whole rows of C channels for the matched cells alone.
        """
        width = grid_hw[1]
        r = self.ratio
        padded = F.pad(fine1, (self.pad, self.pad, self.pad, self.pad)).permute(0, 2, 3, 1)
        batch, padded_h, padded_w, channels = padded.shape
        rows = padded.reshape(batch * padded_h * padded_w, channels)
        row = torch.div(index1, width, rounding_mode="floor")
        top_left = (row * padded_w + (index1 - row * width)) * r  # (B, N0)
        steps = range(self.window)
        taps = torch.tensor([dy * padded_w + dx for dy in steps for dx in steps], device=index1.device)
        flat = _flatten_batch(top_left.unsqueeze(-1) + taps, padded_h * padded_w)  # (B, N0, K)
        k = taps.shape[0]
        selected = rows.index_select(0, flat.flatten()).reshape(-1, k, channels)  # (B*N0, K, C)
        logits = (selected @ desc0.reshape(-1, channels, 1)).reshape(batch, -1, k)
        weights = (logits / channels**0.5).softmax(dim=-1)  # (B, N0, K)
        offset = (weights @ self.window_offsets) * self.fine_stride
        return offset, logits


class LocalRefiner(RefinementLevel):
    """A later refinement level on stride-`stride` features: level 2 on a backbone stage
    (e.g. 2 input pixels), level 3 on the input image itself (stride 1).

    The image0 descriptor is the feature at the exact cell centre (the mean of the 2x2
    pixels around it, since a cell spans an even number of these pixels); image1's
    window is gathered around the nearest pixel to the previous estimate, so only
    integer indices enter the gather.
    """

    window_steps: torch.Tensor  # (window**2, 2) x, y steps, a buffer

    def __init__(self, config: ModelConfig, level: int = 2) -> None:
        super().__init__()
        bb = config.backbone
        if level == 2:
            assert bb.fine2_stage is not None and bb.fine2_stride is not None
            in_ch, self.stride = bb.widths[bb.fine2_stage - 1], bb.fine2_stride
            dim, window, kernel, depth = (
                config.fine2_dim,
                config.fine2_window,
                config.fine2_kernel,
                config.fine2_depth,
            )
        elif level == 3:
            in_ch, self.stride = 1, 1  # the grayscale input
            dim, window, kernel, depth = config.fine3_dim, config.fine3_window, 3, config.fine3_depth
        else:
            raise ValueError(f"refinement levels after the first are 2 and 3, not {level}")
        self.ratio = bb.coarse_stride // self.stride
        if self.ratio % 2 or window % 2 == 0:
            raise ValueError(f"level {level} needs an even pixels-per-cell ratio and an odd window")
        self.window = window
        self.proj = projection(in_ch, dim, kernel, depth)
        # Pixels the projection reads beyond its output on each side, and so the first row
        # (and column) inside a cell of the patch that a cell's 2x2 centre depends on.
        margin = sum(layer.kernel_size[0] // 2 for layer in self.proj if isinstance(layer, nn.Conv2d))
        self.patch_start = self.ratio // 2 - 1 - margin
        self.patch_size = 2 + 2 * margin
        half = self.window // 2
        steps = torch.arange(-half, half + 1)
        grid_y, grid_x = torch.meshgrid(steps, steps, indexing="ij")
        self.register_buffer(
            "window_steps", torch.stack([grid_x, grid_y], -1).reshape(-1, 2), persistent=False
        )

    def cell_descriptors(self, feat0: torch.Tensor) -> torch.Tensor:
        """(B, C, H2, W2) -> (B, N0, C): features at the coarse cell centres."""
        r, c = self.ratio, self.ratio // 2
        centre = (
            feat0[:, :, c - 1 :: r, c - 1 :: r]
            + feat0[:, :, c - 1 :: r, c::r]
            + feat0[:, :, c::r, c - 1 :: r]
            + feat0[:, :, c::r, c::r]
        ) / 4
        return centre.flatten(2).transpose(1, 2)

    def reads_patches(self) -> bool:
        """True in eval mode where the projection's reach around a cell's 2x2 centre
        stays inside the cell (the third level: 6x6 of a cell's 8x8 pixels). Training
        keeps the dense map: batch norm's statistics there are over whole maps."""
        return not self.training and self.patch_start >= 0

    def describe_cells(self, source: torch.Tensor) -> torch.Tensor:
        """`cell_descriptors(features(source))`, on each cell's own patch where
        `reads_patches`: unpadded convolutions over the patch give the same numbers as the
        dense map at the centre, for a quarter of the first layer's work and a sixteenth of
        the rest's at the third level."""
        if not self.reads_patches():
            return super().describe_cells(source)
        batch, channels, height, width = source.shape
        r, start, size = self.ratio, self.patch_start, self.patch_size
        rows, cols = height // r, width // r
        cells = source.reshape(batch, channels, rows, r, cols, r)
        patches = cells[:, :, :, start : start + size, :, start : start + size]
        x = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch * rows * cols, channels, size, size)
        for layer in self.proj:
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, layer.weight, layer.bias, layer.stride, 0, layer.dilation, layer.groups)
            else:
                x = layer(x)
        return x.mean(dim=(2, 3)).reshape(batch, rows * cols, -1)  # x: (B * N0, C, 2, 2)

    def forward(
        self, desc0: torch.Tensor, feat1: torch.Tensor, points1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Refine estimates of where image0's cell centres land in image1.

        desc0: (B, N0, C) image0's cell descriptors (`cell_descriptors`); feat1:
        (B, C, H2, W2) image1's projected features; points1: (B, N0, 2) current
        estimates in input pixels. Returns (refined (B, N0, 2) input pixels, the window
        centres (B, N0, 2) in this level's pixels (int64), logits (B, N0, window**2)).
        """
        batch, channels, height, width = feat1.shape
        # Input pixel x lies at (x + 0.5) / stride - 0.5 in this level's pixels.
        centre = torch.round((points1 + 0.5) / self.stride - 0.5).to(torch.int64)
        limit = torch.tensor([width - 1, height - 1], device=centre.device)
        centre = torch.minimum(centre.clamp_min(0), limit)
        taps = centre.unsqueeze(2) + self.window_steps  # (B, N0, K, 2)
        taps = torch.minimum(taps.clamp_min(0), limit)
        flat = _flatten_batch(taps[..., 1] * width + taps[..., 0], height * width)  # (B, N0, K)
        rows = feat1.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
        n0, k = flat.shape[1], flat.shape[2]
        window = rows.index_select(0, flat.flatten()).reshape(batch * n0, k, channels)
        logits = (window @ desc0.reshape(-1, channels, 1)).reshape(batch, n0, k)
        weights = (logits / channels**0.5).softmax(dim=-1)
        expected = centre.to(weights.dtype) + weights @ self.window_steps.to(weights.dtype)
        return (expected + 0.5) * self.stride - 0.5, centre, logits


def confidence_expectation(
    confidence_at: Callable[[torch.Tensor], torch.Tensor],
    index1: torch.Tensor,
    grid_hw: tuple[int, int],
    stride: int,
) -> torch.Tensor:
    """Confidence-weighted mean position over the 3x3 cells around each match.

    confidence_at: (B, N0) int64 image1 cells -> (B, N0) their confidence for each image0
    cell; index1: (B, N0) int64. Returns (B, N0, 2) offsets in input pixels from the
    matched cell's centre. Cell indices stay int64 in the graph:
    TensorRT's FP16 mode would lose them above 2048 as floats.
    """
    height, width = grid_hw
    row = torch.div(index1, width, rounding_mode="floor")
    col = index1 - row * width
    offsets, weights = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            y, x = row + dy, col + dx
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            neighbour = y.clamp(0, height - 1) * width + x.clamp(0, width - 1)
            conf = confidence_at(neighbour)
            weights.append(conf * inside.to(conf.dtype))
            offsets.append((dx, dy))
    weight = torch.stack(weights, -1)  # (B, N0, 9)
    steps = torch.tensor(offsets, dtype=weight.dtype, device=weight.device)
    mean = (weight @ steps) / weight.sum(-1, keepdim=True).clamp_min(1e-12)
    return mean * stride
