"""The training loop: virtual batches by gradient accumulation, optional teacher,
periodic validation, resumable checkpoints, TensorBoard scalars and a JSON history."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from coarse_loftr.inference.config import ModelConfig, get_preset
from coarse_loftr.inference.matching import grid_centres
from coarse_loftr.inference.model import CoarseLoFTR
from coarse_loftr.inference.model.refinement import LocalRefiner

from . import losses
from .config import TRAINABLE, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    pairs_seen: int = 0
    steps: int = 0
    wall_seconds: float = 0.0
    # Step at which the current optimiser started (warm-up restarts there after --init-from).
    warmup_origin: int = 0
    history: list[dict] = field(default_factory=list)


def lr_factor(pairs_seen: int, steps: int, config: TrainConfig) -> float:
    """Linear warm-up over the first `warmup_steps` steps (of this optimiser), then a
    step schedule at fractions of the run."""
    optim = config.optim
    warmup = min(1.0, (steps + 1) / max(optim.warmup_steps, 1))
    progress = pairs_seen / config.total_pairs
    decays = sum(progress >= m for m in optim.milestones)
    return warmup * optim.gamma**decays


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def refinement_only(config: TrainConfig) -> bool:
    if config.trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, got {config.trainable!r}")
    return config.trainable == "refinement"


def freeze_for(model: CoarseLoFTR, config: TrainConfig) -> None:
    """With `trainable="refinement"`, stop gradients everywhere but the refinement heads."""
    if not refinement_only(config):
        return
    if not model.refinement_heads():
        raise ValueError("trainable='refinement' needs a model with a refinement head")
    model.requires_grad_(False)
    for head in model.refinement_heads():
        head.requires_grad_(True)


def set_train_mode(model: CoarseLoFTR, config: TrainConfig) -> None:
    """Training mode, except for frozen modules, whose BatchNorm statistics must not move."""
    if refinement_only(config):
        model.eval()
        for head in model.refinement_heads():
            head.train()
    else:
        model.train()


def make_optimizer(model: CoarseLoFTR, config: TrainConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=config.optim.lr, weight_decay=config.optim.weight_decay)


def make_scaler(config: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler, enabled (and with it autocast, see `optimizer_step`) only on CUDA:
    `config.optim.amp` asks for FP16 mixed precision on a GPU; on a CPU autocast would
    mean bfloat16, slower there and not the float32 the exported graph runs in."""
    return torch.amp.GradScaler(device.type, enabled=config.optim.amp and device.type == "cuda")


def optimizer_step(
    model: CoarseLoFTR,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    config: TrainConfig,
    teacher: CoarseLoFTR | None = None,
) -> dict[str, float]:
    """One optimiser step on a virtual batch given as equal-sized micro-batches (on the
    model's device): each micro-batch's loss / len(micro_batches) is back-propagated,
    so the summed gradients are those of the virtual batch's mean loss; then they are
    unscaled, clipped to `config.optim.grad_clip` and applied. Forward passes run under
    autocast exactly when `scaler` is enabled. Returns each loss term's mean over the
    micro-batches (floats, for logging)."""
    accumulation = len(micro_batches)
    device_type = next(model.parameters()).device.type
    optimizer.zero_grad(set_to_none=True)
    running: dict[str, float] = {}
    for batch in micro_batches:
        with torch.autocast(device_type, enabled=scaler.is_enabled()):
            terms = compute_losses(model, batch, config, teacher)
        scaler.scale(terms["loss"] / accumulation).backward()
        for name, value in terms.items():
            running[name] = running.get(name, 0.0) + float(value.detach()) / accumulation
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return running


def compute_losses(
    model: CoarseLoFTR,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    teacher: CoarseLoFTR | None = None,
) -> dict[str, torch.Tensor]:
    """Forward one micro-batch and return every loss term plus their combination ("loss")."""
    if refinement_only(config):
        images = torch.cat([batch["image0"], batch["image1"]])
        with torch.no_grad():
            _, fine, fine2 = model.backbone(images)
        stride = model.config.coarse_stride
        grid_hw = (images.shape[2] // stride, images.shape[3] // stride)
        terms = refinement_losses(model, model.refinement_features(fine, fine2, images), grid_hw, batch)
        total = config.loss.fine_weight * torch.stack(list(terms.values())).sum()
        terms["supervised"] = terms["loss"] = total
        return terms
    out = model(batch["image0"], batch["image1"])
    valid = batch["coarse_valid"]
    terms = {"coarse": losses.coarse_loss(out.conf_matrix, batch["match_index1"], valid, config.loss)}
    supervised = terms["coarse"]
    features = (out.fine0, out.fine1, out.fine2_0, out.fine2_1, out.fine3_0, out.fine3_1)
    for name, value in refinement_losses(model, features, out.grid_hw, batch).items():
        terms[name] = value
        supervised = supervised + config.loss.fine_weight * value
    distill = None
    if teacher is not None:
        with torch.no_grad():
            teacher_sim = teacher(batch["image0"], batch["image1"]).sim_matrix
        distill = losses.distillation_loss(out.sim_matrix, teacher_sim, config.loss.temperature)
        terms["distill"] = distill
    terms["supervised"] = supervised
    terms["loss"] = losses.combine(supervised, distill, config.loss)
    return terms


def refinement_losses(
    model: CoarseLoFTR,
    features: tuple[torch.Tensor | None, ...],
    grid_hw: tuple[int, int],
    batch: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """L2 losses of the refinement levels ("fine", "fine2", "fine3"): the first started at
    the true coarse cell, each later one at the previous level's estimate (detached), as
    at inference. features: (fine0, fine1, fine2_0, fine2_1, fine3_0, fine3_1) as
    `refinement_features` gives."""
    fine0, fine1, fine2_0, fine2_1, fine3_0, fine3_1 = features
    terms: dict[str, torch.Tensor] = {}
    if model.fine_head is None or fine0 is None or fine1 is None:
        return terms
    first = model.fine_head
    offset, _ = first(first.cell_descriptors(fine0), fine1, batch["match_index1"], grid_hw)
    stride = first.fine_stride
    terms["fine"] = losses.fine_loss(offset, batch["offset1"], batch["fine_valid"], stride)
    centres = model.cell_centres(grid_hw, offset.device)[batch["match_index1"]]
    estimate = centres + offset.detach()
    for name, head, feat0, feat1 in (
        ("fine2", model.fine2_head, fine2_0, fine2_1),
        ("fine3", model.fine3_head, fine3_0, fine3_1),
    ):
        if head is None or feat0 is None or feat1 is None:
            break
        terms[name], estimate = local_level_loss(head, feat0, feat1, centres, estimate, batch)
        estimate = estimate.detach()
    return terms


def local_level_loss(
    head: LocalRefiner,
    feat0: torch.Tensor,
    feat1: torch.Tensor,
    centres: torch.Tensor,
    estimate: torch.Tensor,
    batch: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 loss of a later refinement level started from `estimate` (B, N0, 2), the
    previous level's positions in input pixels around the true cells, whose centres are
    `centres` (B, N0, 2). Rows whose true position falls outside the level's window carry
    no signal. Returns (loss, this level's positions)."""
    refined, window_centre, _ = head(head.cell_descriptors(feat0), feat1, estimate)
    truth = centres + batch["offset1"]
    truth_px = (truth + 0.5) / head.stride - 0.5
    inside = ((truth_px - window_centre).abs() <= head.window // 2).all(dim=-1)
    return losses.fine_loss(refined, truth, batch["fine_valid"] & inside, head.stride), refined


@torch.no_grad()
def validate(
    model: CoarseLoFTR, val_batches: list[dict[str, torch.Tensor]], threshold: float = 0.2
) -> dict[str, float]:
    """Position error of the deployed prediction (mutual matches above `threshold`,
    refined) against the true projection, over fixed synthetic pairs. Each module's
    train / eval mode is restored afterwards (frozen parts stay in eval mode)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    stride = model.config.coarse_stride
    errors, counts, coarse_hits, coarse_total = [], [], 0, 0
    for batch in val_batches:
        conf_max, index, offset = model.predict(batch["image0"], batch["image1"])
        rows, cols = batch["image0"].shape[2] // stride, batch["image0"].shape[3] // stride
        centres = torch.from_numpy(grid_centres((rows, cols), stride)).float()
        truth = centres[batch["match_index1"]] + batch["offset1"]
        predicted = centres[index] + offset
        keep = (conf_max > threshold) & batch["fine_valid"]
        error = (predicted - truth).norm(dim=-1)
        errors.append(error[keep])
        counts.append(keep.sum(dim=1).float())
        coarse_hits += int(((index == batch["match_index1"]) & batch["coarse_valid"]).sum())
        coarse_total += int(batch["coarse_valid"].sum())
    for module, training in modes:
        module.training = training
    all_errors = torch.cat(errors).numpy()
    return {
        "val_matches_per_pair": float(torch.cat(counts).mean()),
        "val_median_error_px": float(np.median(all_errors)) if len(all_errors) else math.inf,
        "val_precision_1px": float((all_errors < 1).mean()) if len(all_errors) else 0.0,
        "val_precision_3px": float((all_errors < 3).mean()) if len(all_errors) else 0.0,
        "val_coarse_recall": coarse_hits / max(coarse_total, 1),
    }


def save_checkpoint(
    path: Path,
    model: CoarseLoFTR,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    state: TrainState,
    config: TrainConfig,
) -> None:
    """Write atomically: a run killed mid-save keeps its previous checkpoint."""
    payload = {
        "config": model.config.to_dict(),
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scaler_state_dict": scaler.state_dict(),
        "train_config": config.to_dict(),
        "state": {
            "pairs_seen": state.pairs_seen,
            "steps": state.steps,
            "wall_seconds": state.wall_seconds,
            "warmup_origin": state.warmup_origin,
        },
        "history": state.history,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_teacher(path: Path) -> CoarseLoFTR:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    teacher = CoarseLoFTR(ModelConfig.from_dict(checkpoint["config"]))
    teacher.load_state_dict(checkpoint["model_state_dict"])
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def training_position(checkpoint: dict) -> dict:
    """Where in training a checkpoint was saved (pairs seen, steps, wall seconds...): a
    run's last.pt keeps it as "state", a released student.pt as "training"; {} if neither."""
    return checkpoint.get("state", checkpoint.get("training", {}))


def train(
    config: TrainConfig,
    train_set,
    val_set,
    run_dir: Path,
    teacher_path: Path | None = None,
    resume: bool = False,
    max_minutes: float | None = None,
    model_config: ModelConfig | None = None,
    init_from: Path | None = None,
) -> TrainState:
    """Train until `config.total_pairs` pairs are seen (or this call has run `max_minutes`), writing
    run_dir/last.pt every `checkpoint_minutes` and run_dir/history.json.

    `model_config` replaces the preset named by `config.model` (custom or tiny models).
    `init_from` starts a new run from another run's checkpoint: every tensor whose name
    and shape fit is loaded (new modules start fresh), the schedule, history and clock
    continue from its position, a new optimiser warms up again, and the starting weights
    are validated first.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    model = CoarseLoFTR(model_config or get_preset(config.model)).to(device)
    teacher = load_teacher(teacher_path).to(device) if teacher_path else None
    freeze_for(model, config)
    optimizer = make_optimizer(model, config)
    scaler = make_scaler(config, device)
    state = TrainState()
    last = run_dir / "last.pt"
    resumed = resume and last.exists()
    if resumed:
        checkpoint = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(checkpoint["model_state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        scaler.load_state_dict(checkpoint["scaler_state_dict"])
        state = TrainState(**checkpoint["state"], history=checkpoint["history"])
        log.info("resumed from %s at %d pairs", last, state.pairs_seen)
    elif init_from is not None:
        checkpoint = torch.load(init_from, map_location=device, weights_only=False)
        own = model.state_dict()
        fitting = {
            k: v for k, v in checkpoint["model_state_dict"].items() if k in own and own[k].shape == v.shape
        }
        model.load_state_dict(fitting, strict=False)
        state = TrainState(**training_position(checkpoint), history=checkpoint.get("history", []))
        state.warmup_origin = state.steps
        log.info(
            "initialised from %s at %d pairs; new tensors: %s",
            init_from,
            state.pairs_seen,
            sorted(set(own) - set(fitting)),
        )
    (run_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    micro = config.optim.micro_batch
    accumulation = max(1, config.optim.batch_size // micro)
    val_batches = [
        collate([val_set[i] for i in range(s, min(s + micro, len(val_set)))])
        for s in range(0, len(val_set), micro)
    ]
    val_batches = [{k: v.to(device) for k, v in b.items()} for b in val_batches]
    if init_from is not None and not resumed:
        # The starting weights on this run's own validation pairs: where its curves begin.
        metrics = validate(model, val_batches)
        wall = round(state.wall_seconds, 1)
        state.history.append({"pairs": state.pairs_seen, "wall_seconds": wall, **metrics})
        log.info("pairs %d (starting weights): %s", state.pairs_seen, metrics)
    set_train_mode(model, config)
    session_start = time.monotonic()
    start = session_start - state.wall_seconds
    last_save = time.monotonic()
    next_val = (state.pairs_seen // config.val_every_pairs + 1) * config.val_every_pairs
    progress = tqdm(
        total=config.total_pairs,
        initial=state.pairs_seen,
        unit="pair",
        desc=f"train {config.model}",
        dynamic_ncols=True,
    )
    while state.pairs_seen < config.total_pairs:
        if max_minutes is not None and time.monotonic() - session_start > max_minutes * 60:
            log.info("time budget reached at %d pairs", state.pairs_seen)
            break
        for group in optimizer.param_groups:
            group["lr"] = config.optim.lr * lr_factor(
                state.pairs_seen, state.steps - state.warmup_origin, config
            )
        micro_batches = []
        for k in range(accumulation):
            first = state.pairs_seen + k * micro
            batch = collate([train_set[(first + i) % len(train_set)] for i in range(micro)])
            micro_batches.append({key: value.to(device) for key, value in batch.items()})
        running = optimizer_step(model, optimizer, scaler, micro_batches, config, teacher)
        state.steps += 1
        state.pairs_seen += micro * accumulation
        state.wall_seconds = time.monotonic() - start
        progress.update(micro * accumulation)
        epoch = state.pairs_seen // config.pairs_per_epoch + 1
        progress.set_postfix(epoch=epoch, loss=f"{running['loss']:.4f}")
        for name, value in running.items():
            writer.add_scalar(f"train/{name}", value, state.pairs_seen)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], state.pairs_seen)
        record = {
            "pairs": state.pairs_seen,
            "epoch": epoch,
            "wall_seconds": round(state.wall_seconds, 1),
            **{f"train_{k}": v for k, v in running.items()},
        }
        if state.pairs_seen >= next_val or state.pairs_seen >= config.total_pairs:
            next_val += config.val_every_pairs
            metrics = validate(model, val_batches)
            record.update(metrics)
            for name, value in metrics.items():
                writer.add_scalar(f"val/{name}", value, state.pairs_seen)
            log.info("pairs %d: %s", state.pairs_seen, metrics)
        state.history.append(record)
        if time.monotonic() - last_save > config.checkpoint_minutes * 60:
            save_checkpoint(last, model, optimizer, scaler, state, config)
            (run_dir / "history.json").write_text(json.dumps(state.history))
            last_save = time.monotonic()
    progress.close()
    save_checkpoint(last, model, optimizer, scaler, state, config)
    (run_dir / "history.json").write_text(json.dumps(state.history))
    writer.close()
    return state
