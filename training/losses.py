"""Loss terms: supervised coarse matching, refinement, and distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import LossConfig


def coarse_loss(
    conf_matrix: torch.Tensor, match_index1: torch.Tensor, valid: torch.Tensor, config: LossConfig
) -> torch.Tensor:
    """Supervised loss on the dual-softmax matrix at the ground-truth matches.

    conf_matrix: (B, N0, N1) in (0, 1); match_index1: (B, N0) int64; valid: (B, N0)
    bool marks rows with a (mutual) true match. "focal": LoFTR's focal loss, mean over
    positives plus mean over negatives; "nll": -log conf at the true match.
    """
    eps = 1e-6
    conf = conf_matrix.clamp(eps, 1 - eps)
    positive = torch.gather(conf, 2, match_index1.unsqueeze(-1)).squeeze(-1)  # (B, N0)
    if not valid.any():
        return conf.sum() * 0.0
    if config.coarse == "nll":
        return -positive.log()[valid].mean()
    if config.coarse != "focal":
        raise ValueError(f"unknown coarse loss {config.coarse!r}")
    alpha, gamma = config.focal_alpha, config.focal_gamma
    pos_loss = -alpha * (1 - positive).pow(gamma) * positive.log()
    positive_mask = torch.zeros_like(conf, dtype=torch.bool)
    positive_mask.scatter_(2, match_index1.unsqueeze(-1), valid.unsqueeze(-1))
    neg_loss = -(1 - alpha) * conf.pow(gamma) * (1 - conf).log()
    return pos_loss[valid].mean() + neg_loss[~positive_mask].mean()


def fine_loss(
    offset_pred: torch.Tensor, offset_true: torch.Tensor, valid: torch.Tensor, fine_stride: int
) -> torch.Tensor:
    """L2 distance between predicted and true sub-cell positions, in fine pixels.

    offset_pred, offset_true: (B, N0, 2) in input pixels; valid: (B, N0) bool.
    """
    if not valid.any():
        return offset_pred.sum() * 0.0
    error = (offset_pred - offset_true) / fine_stride
    return error[valid].norm(dim=-1).pow(2).mean()


def distillation_loss(
    student_sim: torch.Tensor, teacher_sim: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) of temperature-softened match distributions, in both
    directions of the matrix (rows: image0 -> image1, columns: image1 -> image0),
    scaled by T^2 so gradients keep their size as T changes (Hinton et al.).

    student_sim, teacher_sim: (B, N0, N1) similarity logits on the same grid.
    """
    total = student_sim.new_zeros(())
    for dim in (2, 1):
        log_student = F.log_softmax(student_sim / temperature, dim=dim)
        log_teacher = F.log_softmax(teacher_sim / temperature, dim=dim)
        kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=dim)
        total = total + kl.mean()
    return total / 2 * temperature**2


def combine(supervised: torch.Tensor, distillation: torch.Tensor | None, config: LossConfig) -> torch.Tensor:
    """a * supervised + (1 - a) * amplification * distillation (supervised alone without a teacher)."""
    if distillation is None:
        return supervised
    return config.alpha * supervised + (1 - config.alpha) * config.amplification * distillation
