"""The coarse LoFTR network: backbone -> positional encoding -> linear transformer ->
dual-softmax confidence matrix (-> learned sub-cell refinement)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..graph import REFINEMENT_HEADS
from .backbone import ResNetBackbone
from .position_encoding import PositionEncodingSine
from .refinement import FineHead, LocalRefiner, confidence_expectation
from .transformer import LocalFeatureTransformer


class DualSoftmax(nn.Module):
    """Similarity logits of two token sets and their dual-softmax confidence.

    feat0 (B, N0, d), feat1 (B, N1, d) -> sim_matrix, conf_matrix (B, N0, N1). A module of
    its own so that its ops carry the `/dual_softmax/` scope in exported graphs, which
    FP16 TensorRT engines keep in FP32 (`inference.graph.FP32_SCOPES`).
    """

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = feat0.shape[-1] ** 0.5
        sim_matrix = (feat0 / scale) @ (feat1 / scale).transpose(1, 2) / self.temperature
        return sim_matrix, sim_matrix.softmax(dim=1) * sim_matrix.softmax(dim=2)


class MutualNearest(nn.Module):
    """conf_matrix (B, N0, N1) -> conf_max (B, N0), 0 where image0's best image1 cell
    does not pick it back, and match_index (B, N0) int64 (scope `/mutual_nearest/`)."""

    def forward(self, conf_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conf_max, match_index = conf_matrix.max(dim=2)
        column_max = conf_matrix.max(dim=1).values  # (B, N1)
        mutual = conf_max >= torch.gather(column_max, 1, match_index)
        return conf_max * mutual.to(conf_max.dtype), match_index


@dataclass
class CoarseOutput:
    """What training needs from one forward pass.

    sim_matrix / conf_matrix: (B, N0, N1) similarity logits (already divided by the
    temperature) and dual-softmax confidence; grid_hw: coarse grid (rows, cols);
    fine0 / fine1: (B, C, Hf, Wf) projected fine features, or None; fine2_0 / fine2_1,
    fine3_0 / fine3_1: the same for the second and third refinement levels.
    """

    sim_matrix: torch.Tensor
    conf_matrix: torch.Tensor
    grid_hw: tuple[int, int]
    fine0: torch.Tensor | None
    fine1: torch.Tensor | None
    fine2_0: torch.Tensor | None = None
    fine2_1: torch.Tensor | None = None
    fine3_0: torch.Tensor | None = None
    fine3_1: torch.Tensor | None = None


class CoarseLoFTR(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNetBackbone(config)
        self.pos_encoding = PositionEncodingSine(config.d_model, config.pe_max_shape, config.pe_temp_bug_fix)
        self.loftr_coarse = LocalFeatureTransformer(config)
        self.dual_softmax = DualSoftmax(config.temperature)
        self.mutual_nearest = MutualNearest()
        self.fine_head = FineHead(config) if config.has_fine_head else None
        self.fine2_head = LocalRefiner(config) if config.has_fine2_head else None
        self.fine3_head = LocalRefiner(config, level=3) if config.has_fine3_head else None

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> CoarseOutput:
        """image0, image1: (B, 1, H, W) grayscale in [0, 1], same size, H and W
        multiples of the coarse stride."""
        images = torch.cat([image0, image1], dim=0)
        batch = image0.shape[0]
        coarse, fine, fine2 = self.backbone(images)
        grid_hw = (coarse.shape[2], coarse.shape[3])
        tokens = self.pos_encoding(coarse).flatten(2).transpose(1, 2)  # (2B, N, d)
        feat0, feat1 = self.loftr_coarse(tokens[:batch], tokens[batch:])
        sim_matrix, conf_matrix = self.dual_softmax(feat0, feat1)
        return CoarseOutput(sim_matrix, conf_matrix, grid_hw, *self.refinement_features(fine, fine2, images))

    def refinement_features(
        self, fine: torch.Tensor | None, fine2: torch.Tensor | None, images: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """Raw outputs (2B, C, H, W) of the stages feeding the refinement levels and the
        input images (2B, 1, H, W), images 0 then 1 -> projected (fine0, fine1, fine2_0,
        fine2_1, fine3_0, fine3_1), None where a level is absent."""
        levels: list[tuple[FineHead | LocalRefiner | None, torch.Tensor | None]] = [
            (self.fine_head, fine),
            (self.fine2_head, fine2),
            (self.fine3_head, images),
        ]
        pairs: list[torch.Tensor | None] = []
        for head, source in levels:
            if head is None or source is None:
                pairs += [None, None]
                continue
            projected = head.features(source)
            half = projected.shape[0] // 2
            pairs += [projected[:half], projected[half:]]
        return tuple(pairs)

    def refinement_heads(self) -> list[nn.Module]:
        """The refinement levels this model has, first to last."""
        return [head for head in (getattr(self, name) for name in REFINEMENT_HEADS) if head is not None]

    def cell_centres(self, grid_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
        """(N, 2) x, y centres of the coarse cells in input pixels (pixel centres at integers)."""
        rows, cols = grid_hw
        stride = self.config.coarse_stride
        ys, xs = torch.meshgrid(
            torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij"
        )
        return torch.stack([xs.flatten(), ys.flatten()], -1).float() * stride + (stride - 1) / 2

    def predict(
        self, image0: torch.Tensor, image1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The deployed graph: per image0 cell, its mutual-nearest-neighbour match.

        Returns conf_max (B, N0) float32 (0 where the best match is not mutual),
        match_index (B, N0) int64 (row-major image1 cell), offset1 (B, N0, 2) float32
        (sub-cell position of the match in input pixels, from that cell's centre).
        A few numbers per cell leave the graph instead of the N0 x N1 matrix.
        """
        out = self.forward(image0, image1)
        conf = out.conf_matrix
        conf_max, match_index = self.mutual_nearest(conf)
        if self.fine_head is not None and out.fine0 is not None:
            offset1, _ = self.fine_head(out.fine0, out.fine1, match_index, out.grid_hw)
            if self.fine2_head is not None and out.fine2_0 is not None:
                matched_centres = self.cell_centres(out.grid_hw, conf.device)[match_index]
                refined, _, _ = self.fine2_head(out.fine2_0, out.fine2_1, matched_centres + offset1)
                if self.fine3_head is not None and out.fine3_0 is not None:
                    refined, _, _ = self.fine3_head(out.fine3_0, out.fine3_1, refined)
                offset1 = refined - matched_centres
        else:
            offset1 = confidence_expectation(conf, match_index, out.grid_hw, self.config.coarse_stride)
        return conf_max, match_index, offset1


class PredictGraph(nn.Module):
    """`CoarseLoFTR.predict` as a module's forward, for export and tracing."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor, image1: torch.Tensor):
        return self.model.predict(image0, image1)
