"""Typed configuration of the matcher, with every default in one place.

`ModelConfig` describes the network (what a checkpoint holds); `MatchConfig`,
`RegistrationConfig` describe what is done with its output. Named presets cover the
published Coarse_LoFTR_TRT student, the original LoFTR outdoor model, and this
project's own teacher and students.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from math import prod
from typing import Any


@dataclass(frozen=True)
class BackboneConfig:
    """ResNet backbone: a 7x7 stride-2 stem, then stages of BasicBlocks.

    The coarse feature map is a 1x1 projection of the last stage, at stride
    `2 * prod(strides)` of the input. `fine_stage` (1-based) names the stage whose
    output feeds the sub-cell refinement head; None means no learned refinement.
    """

    stem_dim: int = 16
    widths: tuple[int, ...] = (16, 32, 64)
    strides: tuple[int, ...] = (1, 2, 2)
    blocks: tuple[int, ...] = (1, 2, 2)
    fine_stage: int | None = 2
    # Stage feeding the second, finer refinement level (None: one level only).
    fine2_stage: int | None = None

    @property
    def coarse_stride(self) -> int:
        return 2 * prod(self.strides)

    @property
    def fine_stride(self) -> int | None:
        if self.fine_stage is None:
            return None
        return 2 * prod(self.strides[: self.fine_stage])

    @property
    def fine2_stride(self) -> int | None:
        if self.fine2_stage is None:
            return None
        return 2 * prod(self.strides[: self.fine2_stage])


@dataclass(frozen=True)
class ModelConfig:
    """The whole network. Presets below; `ModelConfig.from_dict` reads a checkpoint's copy."""

    name: str = "student"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    d_model: int = 64
    nhead: int = 1
    layer_names: tuple[str, ...] = ("self", "cross", "self", "cross")
    layer_norm_eps: float = 1e-5
    # LoFTR's sine encoding. The published checkpoints were trained with the "buggy"
    # divisor (temp_bug_fix=False); it must stay so for them to load with parity.
    pe_temp_bug_fix: bool = True
    pe_max_shape: tuple[int, int] = (256, 256)
    # Dual-softmax temperature applied to similarities of features scaled by 1/sqrt(d).
    temperature: float = 0.1
    # Learned refinement: channels of the fine features and the side of the search
    # window in fine pixels, centred on the matched coarse cell.
    fine_dim: int = 32
    fine_window: int = 6
    fine_kernel: int = 3  # first conv of the fine projection (1 = pointwise only)
    # Conv-BN-ReLU layers of the projection before its last pointwise conv; the ones after
    # the first are 3x3, widening the context a fine descriptor sees.
    fine_depth: int = 1
    # Second level: channels, and the (odd) window side in pixels of its stride, centred
    # on the nearest pixel to the first level's estimate; its projection as above.
    fine2_dim: int = 0
    fine2_window: int = 5
    fine2_kernel: int = 1
    fine2_depth: int = 1
    # Third level, at the input's own resolution: no backbone stage is that fine, so its
    # features come from a small conv stack over the image itself. 0 channels: no third level.
    fine3_dim: int = 0
    fine3_window: int = 5
    fine3_depth: int = 2

    @property
    def coarse_stride(self) -> int:
        return self.backbone.coarse_stride

    @property
    def has_fine_head(self) -> bool:
        return self.backbone.fine_stage is not None and self.fine_dim > 0

    @property
    def has_fine2_head(self) -> bool:
        return self.has_fine_head and self.backbone.fine2_stage is not None and self.fine2_dim > 0

    @property
    def has_fine3_head(self) -> bool:
        return self.has_fine2_head and self.fine3_dim > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        backbone_fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("backbone").items()
        }
        backbone = BackboneConfig(**backbone_fields)
        known = {f.name for f in fields(cls)}
        # JSON gives lists where the dataclass has tuples.
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(backbone=backbone, **kwargs)


PRESETS: dict[str, ModelConfig] = {
    # The published Coarse_LoFTR_TRT student (LoFTR_teacher.pt / LoFTR_no_teacher.pt):
    # 1/16 grid, d=32, one head. Its 1/4 FPN branch is never computed here.
    "coarse_loftr_trt": ModelConfig(
        name="coarse_loftr_trt",
        backbone=BackboneConfig(
            stem_dim=8, widths=(8, 16, 32, 32), strides=(1, 2, 2, 2), blocks=(2, 2, 2, 2), fine_stage=None
        ),
        d_model=32,
        nhead=1,
        layer_norm_eps=1e-7,
        pe_temp_bug_fix=False,
        fine_dim=0,
    ),
    # The original LoFTR outdoor_ds model, coarse level only (1/8 grid, d=256, 8 heads).
    "loftr_outdoor": ModelConfig(
        name="loftr_outdoor",
        backbone=BackboneConfig(
            stem_dim=128, widths=(128, 196, 256), strides=(1, 2, 2), blocks=(2, 2, 2), fine_stage=None
        ),
        d_model=256,
        nhead=8,
        layer_names=("self", "cross") * 4,
        pe_temp_bug_fix=False,
        fine_dim=0,
    ),
    # This project's models: a 1/8 grid on a half-size input plus a learned refinement
    # head on stride-4 features.
    # One block at stride 4 keeps the coarse matcher near 2.3 GFLOP a 320x240 pair; three
    # refinement levels (stride 4, 2, then the input's pixels) add 1.4 more. The projections
    # are two 3x3 layers deep. Median validation error: 1.53 px with 1x1 projections and two
    # levels, 1.15 with these projections, 1.05 with the third level.
    "student": ModelConfig(
        backbone=BackboneConfig(
            stem_dim=16, widths=(16, 32, 64), strides=(1, 2, 2), blocks=(1, 1, 2), fine_stage=2, fine2_stage=1
        ),
        fine_depth=2,
        fine2_dim=24,
        fine2_kernel=3,
        fine2_depth=2,
        fine3_dim=8,
    ),
    # The same matcher on a 1/16 grid, for full-resolution input at the token count of
    # the 1/8 grid on half the size: a fourth backbone stage gives the coarse tokens, the
    # first refinement level moves to stride 8 and the second, at stride 2, searches a
    # wider window from that coarser estimate. Stages 1-3, the transformer and the last
    # two levels have the student's shapes, so a student checkpoint initialises them.
    "student16": ModelConfig(
        name="student16",
        backbone=BackboneConfig(
            stem_dim=16,
            widths=(16, 32, 64, 96),
            strides=(1, 2, 2, 2),
            blocks=(1, 1, 2, 2),
            fine_stage=3,
            fine2_stage=1,
        ),
        fine_depth=2,
        fine2_dim=24,
        fine2_window=7,
        fine2_kernel=3,
        fine2_depth=2,
        fine3_dim=8,
    ),
    "teacher": ModelConfig(
        name="teacher",
        backbone=BackboneConfig(
            stem_dim=24, widths=(24, 48, 96), strides=(1, 2, 2), blocks=(1, 2, 2), fine_stage=2
        ),
        d_model=96,
        nhead=2,
        fine_dim=32,
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class MatchConfig:
    """Turning the network's per-cell output into matches."""

    threshold: float = 0.2  # minimum dual-softmax confidence of a mutual match
    border: int = 1  # coarse cells dropped along each edge of the (unpadded) image
    max_matches: int | None = None  # keep the most confident ones; None keeps all
    refine: bool = True  # add the sub-cell offset to image1's keypoints
    # Also match image1 turned by 90, 180 and 270 degrees and keep the turn with the most
    # total confidence: for pairs beyond the model's +-45 degrees, at four times image1's
    # half of the model.
    rotations: bool = False


@dataclass(frozen=True)
class RegistrationConfig:
    """Robust geometry fitted to matches (OpenCV USAC MAGSAC)."""

    method: str = "homography"  # or "fundamental"
    threshold_px: float = 3.0  # inlier threshold in pixels of image1
    confidence: float = 0.999
    max_iters: int = 10000


def with_overrides(config: Any, **overrides: Any) -> Any:
    """`dataclasses.replace` that ignores None values (unset options)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
