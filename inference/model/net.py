"""The coarse LoFTR network: backbone -> positional encoding -> linear transformer ->
dual-softmax confidence matrix (-> learned sub-cell refinement)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..config import ModelConfig
from ..graph import REFINEMENT_HEADS
from .backbone import ResNetBackbone
from .position_encoding import PositionEncodingSine
from .refinement import FineHead, LocalRefiner, RefinementLevel, confidence_expectation
from .transformer import LocalFeatureTransformer


def similarity(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float) -> torch.Tensor:
    """feat0 (B, N0, d), feat1 (B, N1, d) -> (B, N0, N1) logits feat0 . feat1 / (d * temperature)."""
    return (feat0 * (1.0 / (feat0.shape[-1] * temperature))) @ feat1.transpose(1, 2)


class DualSoftmax(nn.Module):
    """Similarity logits of two token sets and their dual-softmax confidence, for training.

    feat0 (B, N0, d), feat1 (B, N1, d) -> sim_matrix, conf_matrix (B, N0, N1). The
    deployed graph never forms conf_matrix (see `MutualNearest`).
    """

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sim_matrix = similarity(feat0, feat1, self.temperature)
        return sim_matrix, sim_matrix.softmax(dim=1) * sim_matrix.softmax(dim=2)


class LogDualSoftmax(NamedTuple):
    """The dual softmax in the log domain: conf_matrix = exp(2 sim_matrix - row_lse - col_lse).

    sim_matrix (B, N0, N1); row_lse (B, N0, 1) and col_lse (B, 1, N1): log-sum-exp of
    sim_matrix along its rows and its columns.
    """

    sim_matrix: torch.Tensor
    row_lse: torch.Tensor
    col_lse: torch.Tensor

    def confidence_at(self, index1: torch.Tensor) -> torch.Tensor:
        """index1 (B, N0) int64 image1 cells -> (B, N0) conf_matrix[b, i, index1[b, i]]."""
        logits = torch.gather(self.sim_matrix, 2, index1.unsqueeze(-1)).squeeze(-1)
        return torch.exp(
            2 * logits - self.row_lse.squeeze(-1) - torch.gather(self.col_lse.squeeze(1), 1, index1)
        )


def _logsumexp_last(x: torch.Tensor) -> torch.Tensor:
    """(B, M, N) -> (B, M, 1) log-sum-exp along the last axis. From ONNX Runtime's fused
    softmax: its row maximum is exp(max - lse). Faster there than torch.logsumexp's
    export or a max-subtract-exp-sum chain, each of which writes the whole matrix again."""
    peak = x.amax(dim=-1, keepdim=True)
    return peak - x.softmax(dim=-1).amax(dim=-1, keepdim=True).log()


class MutualNearest(nn.Module):
    """The deployed read-out (scope `/mutual_nearest/`): each image0 cell's best image1
    cell by dual-softmax confidence, kept where that cell picks it back.

    feat0 (B, N0, d), feat1 (B, N1, d) -> conf_max (B, N0) float32, 0 where the best match
    is not mutual; match_index (B, N0) int64; the `LogDualSoftmax` it used.

    conf_matrix is never formed: as conf_ij = exp(2 s_ij - r_i - c_j), a row's maximum is
    at argmax_j (s_ij - c_j / 2) and a column's at argmax_i (s_ij - r_i / 2). The
    similarity comes from two matmuls, one per orientation, so that every reduction runs
    along the last axis: ONNX Runtime's softmax and reductions along another axis are
    several times slower (strided reads of a matrix that outgrows the caches).
    """

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(
        self, feat0: torch.Tensor, feat1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, LogDualSoftmax]:
        sim_matrix = similarity(feat0, feat1, self.temperature)  # (B, N0, N1)
        sim_transposed = similarity(feat1, feat0, self.temperature)  # (B, N1, N0)
        row_lse = _logsumexp_last(sim_matrix)  # (B, N0, 1)
        col_lse = _logsumexp_last(sim_transposed).transpose(1, 2)  # (B, 1, N1)
        row_best, match_index = (sim_matrix - col_lse / 2).topk(1, dim=2)  # (B, N0, 1)
        match_index = match_index.squeeze(2)
        # The mutual check reads row match_index[i] of `by_column` both at its maximum and
        # at column i: the same floats, so the comparison is exact.
        by_column = sim_transposed - row_lse.transpose(1, 2) / 2  # (B, N1, N0)
        column_best = by_column.amax(dim=2)  # (B, N1)
        cells0 = torch.arange(by_column.shape[2], device=by_column.device).unsqueeze(0)
        own = torch.gather(by_column.flatten(1), 1, match_index * by_column.shape[2] + cells0)
        mutual = own >= torch.gather(column_best, 1, match_index)
        conf_max = torch.exp(2 * row_best.squeeze(2) - row_lse.squeeze(2))
        return conf_max * mutual.to(conf_max.dtype), match_index, LogDualSoftmax(sim_matrix, row_lse, col_lse)


class Image0Features(NamedTuple):
    """Image0's half of the matching, which does not depend on image1: computed once for
    a reference that a stream of frames is matched against (`CoarseLoFTR.predict_from`).

    tokens0: (B, N0, d) backbone tokens with the position encoding, before the
    transformer; descriptors0: one (B, N0, C_l) tensor per refinement level the model
    has, first to last: that level's feature at each coarse cell.
    """

    tokens0: torch.Tensor
    descriptors0: tuple[torch.Tensor, ...]


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
        self.mutual_nearest = MutualNearest(config.temperature)
        self.fine_head = FineHead(config) if config.has_fine_head else None
        self.fine2_head = LocalRefiner(config) if config.has_fine2_head else None
        self.fine3_head = LocalRefiner(config, level=3) if config.has_fine3_head else None

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> CoarseOutput:
        """image0, image1: (B, 1, H, W) grayscale in [0, 1], same size, H and W
        multiples of the coarse stride."""
        feat0, feat1, grid_hw, levels = self.encode(image0, image1)
        sim_matrix, conf_matrix = self.dual_softmax(feat0, feat1)
        return CoarseOutput(sim_matrix, conf_matrix, grid_hw, *levels)

    def encode(
        self, image0: torch.Tensor, image1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[torch.Tensor | None, ...]]:
        """Everything before the matching: the transformed tokens feat0, feat1 (B, N, d),
        the coarse grid (rows, cols) and the projected refinement features (see
        `refinement_features`)."""
        batch = image0.shape[0]
        tokens, grid_hw, maps = self.image_features(torch.cat([image0, image1], dim=0))
        feat0, feat1 = self.loftr_coarse(tokens[:batch], tokens[batch:])
        return feat0, feat1, grid_hw, _by_image(maps)

    def level_maps(
        self, fine: torch.Tensor | None, fine2: torch.Tensor | None, images: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Raw outputs (B, C, H, W) of the stages feeding the refinement levels and the
        input images (B, 1, H, W) -> the projected map (B, C_l, H_l, W_l) of each level
        the model has, first to last."""
        return _project(self._level_sources(fine, fine2, images))

    def _level_sources(
        self, fine: torch.Tensor | None, fine2: torch.Tensor | None, images: torch.Tensor
    ) -> list[tuple[RefinementLevel, torch.Tensor]]:
        """Each refinement level the model has, first to last, with what it reads."""
        return [
            (head, source)
            for head, source in zip(self.refinement_heads(), (fine, fine2, images))
            if source is not None
        ]

    def refinement_features(
        self, fine: torch.Tensor | None, fine2: torch.Tensor | None, images: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """`level_maps` of images 0 then 1 (2B, ...) split by image: (fine0, fine1, fine2_0,
        fine2_1, fine3_0, fine3_1), None where a level is absent."""
        return _by_image(self.level_maps(fine, fine2, images))

    def image_features(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, int], tuple[torch.Tensor, ...]]:
        """What one image gives before it meets the other: images (B, 1, H, W) -> tokens
        (B, N, d) with the position encoding, the coarse grid (rows, cols) and `level_maps`."""
        tokens, grid_hw, sources = self._tokens_and_sources(images)
        return tokens, grid_hw, _project(sources)

    def _tokens_and_sources(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, int], list[tuple[RefinementLevel, torch.Tensor]]]:
        """images (B, 1, H, W) -> tokens (B, N, d), the coarse grid and `_level_sources`."""
        coarse, fine, fine2 = self.backbone(images)
        tokens = self.pos_encoding(coarse).flatten(2).transpose(1, 2)
        return tokens, (coarse.shape[2], coarse.shape[3]), self._level_sources(fine, fine2, images)

    def refinement_heads(self) -> list[RefinementLevel]:
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
        batch = image0.shape[0]
        tokens, grid_hw, sources = self._tokens_and_sources(torch.cat([image0, image1], dim=0))
        feat0, feat1 = self.loftr_coarse(tokens[:batch], tokens[batch:])
        descriptors0, maps1 = [], []
        for head, source in sources:
            if head.reads_patches():
                descriptors0.append(head.describe_cells(source[:batch]))
                maps1.append(head.features(source[batch:]))
            else:  # one projection over the pair's batch
                both = head.features(source)
                descriptors0.append(head.cell_descriptors(both[:batch]))
                maps1.append(both[batch:])
        return self._match(feat0, feat1, grid_hw, descriptors0, maps1)

    def describe_image0(self, image0: torch.Tensor) -> Image0Features:
        """image0 (B, 1, H, W) -> its `Image0Features`, for `predict_from`."""
        tokens0, _, sources = self._tokens_and_sources(image0)
        return Image0Features(tokens0, tuple(head.describe_cells(source) for head, source in sources))

    def predict_from(
        self, image0: Image0Features, image1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`predict` with image0's half already computed (`describe_image0`): what a
        stream of frames matched against one reference costs per frame. Same outputs."""
        tokens1, grid_hw, maps1 = self.image_features(image1)
        feat0, feat1 = self.loftr_coarse(image0.tokens0, tokens1)
        return self._match(feat0, feat1, grid_hw, image0.descriptors0, maps1)

    def _match(
        self,
        feat0: torch.Tensor,
        feat1: torch.Tensor,
        grid_hw: tuple[int, int],
        descriptors0: Sequence[torch.Tensor],
        maps1: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The read-out and the refinement levels: transformed tokens (B, N, d), image0's
        cell descriptors and image1's level maps -> `predict`'s outputs."""
        conf_max, match_index, log_conf = self.mutual_nearest(feat0, feat1)
        if self.fine_head is None or not descriptors0:
            offset1 = confidence_expectation(
                log_conf.confidence_at, match_index, grid_hw, self.config.coarse_stride
            )
            return conf_max, match_index, offset1
        offset1, _ = self.fine_head(descriptors0[0], maps1[0], match_index, grid_hw)
        later = [head for head in (self.fine2_head, self.fine3_head) if head is not None]
        if later:
            matched_centres = self.cell_centres(grid_hw, feat0.device)[match_index]
            refined = matched_centres + offset1
            for head, desc0, map1 in zip(later, descriptors0[1:], maps1[1:]):
                refined, _, _ = head(desc0, map1, refined)
            offset1 = refined - matched_centres
        return conf_max, match_index, offset1


def _project(sources: list[tuple[RefinementLevel, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Each level's projected map (B, C_l, H_l, W_l) of what it reads."""
    return tuple(head.features(source) for head, source in sources)


def _by_image(maps: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor | None, ...]:
    """Level maps of images 0 then 1 (2B, ...) -> (level1_0, level1_1, level2_0, ...), one
    pair per level in `REFINEMENT_HEADS`, None where the model has no such level."""
    pairs: list[torch.Tensor | None] = [None for _ in range(2 * len(REFINEMENT_HEADS))]
    for level, projected in enumerate(maps):
        half = projected.shape[0] // 2
        pairs[2 * level], pairs[2 * level + 1] = projected[:half], projected[half:]
    return tuple(pairs)


class PredictGraph(nn.Module):
    """`CoarseLoFTR.predict` as a module's forward, for export and tracing."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor, image1: torch.Tensor):
        return self.model.predict(image0, image1)


class ReferenceGraph(nn.Module):
    """`CoarseLoFTR.describe_image0` as a flat forward: image0 -> tokens0, *descriptors0."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image0: torch.Tensor):
        features = self.model.describe_image0(image0)
        return (features.tokens0, *features.descriptors0)


class FrameGraph(nn.Module):
    """`CoarseLoFTR.predict_from` as a flat forward: image1, tokens0, *descriptors0 -> the
    outputs of `predict`."""

    def __init__(self, model: CoarseLoFTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, image1: torch.Tensor, tokens0: torch.Tensor, *descriptors0: torch.Tensor):
        return self.model.predict_from(Image0Features(tokens0, descriptors0), image1)
