"""Training configuration: every knob of a run, with its default, in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class AugmentConfig:
    """Random homographies and photometric changes for self-supervised pairs.

    Geometry is drawn per pair: rotation in degrees, log-uniform scale, independent
    corner displacement and a common shift as fractions of the image size.
    """

    max_rotation_deg: float = 45.0
    # Share of pairs whose rotation is drawn from the full range; the rest stay within
    # `small_rotation_deg` (most real pairs are near-upright).
    full_rotation_share: float = 0.5
    small_rotation_deg: float = 12.0
    scale_range: tuple[float, float] = (0.6, 1.6)
    corner_jitter: float = 0.12
    max_shift: float = 0.12
    # Source pixels per output pixel of image0, drawn log-uniform (crop zoom).
    source_scale_range: tuple[float, float] = (0.8, 2.5)
    brightness: float = 0.25  # additive, in [0, 1] intensity units
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.4)
    noise_sigma: float = 0.03
    blur_probability: float = 0.3
    jpeg_probability: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)


@dataclass(frozen=True)
class LossConfig:
    """Student loss = alpha * supervised + (1 - alpha) * amplification * distillation.

    Without a teacher the distillation term is absent and alpha is taken as 1.
    """

    alpha: float = 0.3
    temperature: float = 5.0  # softening of the match distributions for the KL term
    amplification: float = 10.0
    coarse: str = "focal"  # "focal" (LoFTR) or "nll" (-log conf at the true match)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    fine_weight: float = 1.0  # L2 on the refinement offset, in fine pixels


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    # Step schedule: lr is multiplied by gamma at each milestone (fraction of the run).
    milestones: tuple[float, ...] = (0.6, 0.85)
    gamma: float = 0.3
    batch_size: int = 8  # pairs per optimiser step (the virtual batch)
    micro_batch: int = 4  # pairs per forward pass; batch_size / micro_batch accumulated
    grad_clip: float = 1.0
    amp: bool = True  # used only when CUDA is present


@dataclass(frozen=True)
class DepthConfig:
    """Real-geometry pairs from depth maps and poses (BlendedMVS layout), mixed into
    the synthetic homography pairs when scene folders are given."""

    # Relative agreement of a projected point's depth with the other view's depth map;
    # also the largest spread of the four depth pixels around a looked-up point.
    tolerance: float = 0.1
    share: float = 0.5  # fraction of training pairs drawn from depth scenes
    partners_per_view: int = 3  # best partners per view taken from pair.txt
    min_score: float = 0.0  # pair.txt view-selection score a partner must exceed


#: What a run may change: every parameter, or only the refinement heads.
TRAINABLE = ("all", "refinement")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "student"  # preset name in inference.config.PRESETS
    image_size: tuple[int, int] = (320, 240)  # (W, H) of training pairs
    total_pairs: int = 16000  # run length in pairs (the schedule is laid on it)
    # An epoch is this many freshly drawn random pairs (every pair is new: item i is
    # rendered from seed (seed, i)); it only labels progress and history records.
    pairs_per_epoch: int = 2000
    val_pairs: int = 64  # fixed held-out synthetic pairs from a disjoint image split
    val_every_pairs: int = 1000
    checkpoint_minutes: float = 3.0
    num_threads: int = 2
    seed: int = 0
    # "all", or "refinement": the backbone and transformer stay frozen (BatchNorm
    # statistics included) and only the refinement heads learn; the coarse matrix is then
    # not computed, so a step costs a fraction of a full one.
    trainable: str = "all"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
