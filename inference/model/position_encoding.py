"""LoFTR's 2-D sine positional encoding."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEncodingSine(nn.Module):
    """Adds a fixed (d, H, W) sine/cosine encoding of the coarse grid position.

    Channels 0::4 / 1::4 encode x with sin / cos, 2::4 / 3::4 encode y; positions are
    counted from 1. `temp_bug_fix=False` reproduces the published checkpoints, whose
    divisor was computed as `(-ln(10000) / d) // 2` (= -1.0).
    """

    pe: torch.Tensor  # (1, d, H, W), a buffer

    def __init__(
        self, d_model: int, max_shape: tuple[int, int] = (256, 256), temp_bug_fix: bool = True
    ) -> None:
        super().__init__()
        pe = torch.zeros((d_model, *max_shape))
        y_position = torch.ones(max_shape).cumsum(0).float().unsqueeze(0)
        x_position = torch.ones(max_shape).cumsum(1).float().unsqueeze(0)
        if temp_bug_fix:
            exponent = -math.log(10000.0) / (d_model // 2)
        else:
            exponent = -math.log(10000.0) / d_model // 2
        div_term = torch.exp(torch.arange(0, d_model // 2, 2).float() * exponent)[:, None, None]
        pe[0::4] = torch.sin(x_position * div_term)
        pe[1::4] = torch.cos(x_position * div_term)
        pe[2::4] = torch.sin(y_position * div_term)
        pe[3::4] = torch.cos(y_position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, d, H, W) with H, W within max_shape."""
        return x + self.pe[:, :, : x.shape[2], : x.shape[3]]
