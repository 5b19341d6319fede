"""ResNet backbone that computes only what a coarse matcher uses.

Returns the coarse map (stride `coarse_stride`, `d_model` channels) and, when the
model has a refinement head, the raw output of the stage that feeds it. Unlike the
seed's ResNet-FPN, no top-down 1/4 branch is built: nothing downstream reads it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, padding=0, bias=False)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class ResNetBackbone(nn.Module):
    """Parameter names follow LoFTR's ResNetFPN so published checkpoints load as they are."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        bb = config.backbone
        self.conv1 = nn.Conv2d(1, bb.stem_dim, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(bb.stem_dim)
        self.relu = nn.ReLU(inplace=True)
        in_ch = bb.stem_dim
        self.num_stages = len(bb.widths)
        for index, (width, stride, blocks) in enumerate(zip(bb.widths, bb.strides, bb.blocks), 1):
            layers = [BasicBlock(in_ch, width, stride)]
            layers += [BasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layers))
            in_ch = width
        setattr(self, f"layer{self.num_stages}_outconv", conv1x1(in_ch, config.d_model))
        self.fine_stage = bb.fine_stage if config.has_fine_head else None
        self.fine2_stage = bb.fine2_stage if config.has_fine2_head else None

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """image: (B, 1, H, W) in [0, 1] -> coarse (B, d, H/s, W/s) and the raw outputs
        of the stages feeding the two refinement levels (None where absent)."""
        x = self.relu(self.bn1(self.conv1(image)))
        fine = fine2 = None
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
            if index == self.fine_stage:
                fine = x
            if index == self.fine2_stage:
                fine2 = x
        coarse = getattr(self, f"layer{self.num_stages}_outconv")(x)
        return coarse, fine, fine2
