"""Sub-cell refinement of coarse matches.

Two ways to place a match below the coarse grid, both computed inside the graph so a
backend returns a few numbers per cell instead of the confidence matrix:

* `FineHead` (learned): correlates the stride-`fine_stride` feature of each image0 cell
  with a window of image1's fine features around the matched cell, and takes the
  soft-argmax as the offset.
* `confidence_expectation` (any model, no training): the confidence-weighted mean
  position over the 3x3 cells around the matched one.

Both return offsets in model-input pixels from the centre of the matched image1 cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


class FineHead(nn.Module):
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
        self.proj = nn.Sequential(
            nn.Conv2d(in_ch, config.fine_dim, kernel_size=config.fine_kernel,
                      padding=config.fine_kernel // 2, bias=False),
            nn.BatchNorm2d(config.fine_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.fine_dim, config.fine_dim, kernel_size=1, bias=False),
        )
        # Window offsets, in fine pixels from the centre of a coarse cell, row-major.
        half = (self.window - 1) / 2
        steps = torch.arange(self.window, dtype=torch.float32) - half
        grid_y, grid_x = torch.meshgrid(steps, steps, indexing="ij")
        self.register_buffer("window_offsets", torch.stack([grid_x, grid_y], -1).reshape(-1, 2),
                             persistent=False)

    def features(self, fine: torch.Tensor) -> torch.Tensor:
        """fine: (B, C_in, Hf, Wf) backbone stage output -> (B, C, Hf, Wf)."""
        return self.proj(fine)

    def forward(self, fine0: torch.Tensor, fine1: torch.Tensor, index1: torch.Tensor,
                grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Offsets of image0 cells' matches inside image1.

        fine0, fine1: (B, C, Hf, Wf) projected fine features; index1: (B, N0) int64
        matched cell of image1 for each image0 cell. Returns (offset (B, N0, 2) in input
        pixels from the matched cell's centre, logits (B, N0, window*window)).

        Windows are strided slices of the padded map in channels-last layout (plain
        Slice ops, which every runtime, TensorRT included, supports), so each cell's
        window is one contiguous row and the gather copies whole rows; only the small
        fine maps are transposed, never the (N, K, C) windows.
        """
        height, width = grid_hw
        r = self.ratio
        desc0 = F.avg_pool2d(fine0, r, r).flatten(2).transpose(1, 2)      # (B, N0, C)
        padded = F.pad(fine1, (self.pad, self.pad, self.pad, self.pad)).permute(0, 2, 3, 1)
        windows = torch.stack([
            padded[:, dy: dy + r * height: r, dx: dx + r * width: r, :]
            for dy in range(self.window) for dx in range(self.window)
        ], dim=3)                                                         # (B, Hc, Wc, K, C)
        batch, _, _, k, channels = windows.shape
        windows = windows.reshape(batch * height * width, k, channels)
        flat_index = index1
        if batch > 1:  # a static branch when traced: the deployed graph (batch 1) needs no Range op
            flat_index = index1 + torch.arange(batch, device=index1.device)[:, None] * (height * width)
        selected = windows.index_select(0, flat_index.flatten())          # (B*N0, K, C)
        logits = (selected @ desc0.reshape(-1, channels, 1)).reshape(batch, -1, k)
        weights = (logits / channels ** 0.5).softmax(dim=-1)              # (B, N0, K)
        offset = (weights @ self.window_offsets) * self.fine_stride
        return offset, logits


def confidence_expectation(conf_matrix: torch.Tensor, index1: torch.Tensor,
                           grid_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """Confidence-weighted mean position over the 3x3 cells around each match.

    conf_matrix: (B, N0, N1); index1: (B, N0) int64. Returns (B, N0, 2) offsets in input
    pixels from the matched cell's centre. Cell indices stay int64 in the graph:
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
            conf = torch.gather(conf_matrix, 2, neighbour.unsqueeze(-1)).squeeze(-1)
            weights.append(conf * inside.to(conf.dtype))
            offsets.append((dx, dy))
    weight = torch.stack(weights, -1)                                      # (B, N0, 9)
    steps = torch.tensor(offsets, dtype=conf_matrix.dtype, device=conf_matrix.device)
    mean = (weight @ steps) / weight.sum(-1, keepdim=True).clamp_min(1e-12)
    return mean * stride
