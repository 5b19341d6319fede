"""Training pipeline: loss terms on hand-built cases, homography ground truth, gradient
accumulation and no mixed precision on a CPU (through the trainer's own step), resumable
training and the `train` command end to end (tiny models and 64x48 pairs, so the file
runs in seconds on a CPU)."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from plane_scene import PlaneScene

from coarse_loftr.inference.config import BackboneConfig, ModelConfig
from coarse_loftr.inference.model import CoarseLoFTR
from coarse_loftr.training import losses
from coarse_loftr.training.config import LossConfig, OptimConfig, TrainConfig
from coarse_loftr.training.ground_truth import targets_from_homography
from coarse_loftr.training.homography_pairs import HomographyPairs, split_images
from coarse_loftr.training.trainer import make_optimizer, make_scaler, optimizer_step, train

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 48)
STRIDE = 8
GRID = (SIZE[1] // STRIDE, SIZE[0] // STRIDE)

#: A few thousand parameters; same structure as the student (stride 8, fine stride 4).
TINY = ModelConfig(
    name="tiny",
    backbone=BackboneConfig(stem_dim=4, widths=(4, 8, 8), strides=(1, 2, 2), blocks=(1, 1, 1), fine_stage=2),
    d_model=8,
    nhead=1,
    layer_names=("self", "cross"),
    fine_dim=4,
)


# --- losses ---------------------------------------------------------------------------


def confidence(diagonal: float, off: float, n: int = 3) -> torch.Tensor:
    return torch.full((1, n, n), off).diagonal_scatter(torch.full((1, n), diagonal), dim1=1, dim2=2)


@pytest.mark.parametrize("kind", ["focal", "nll"])
def test_coarse_loss_prefers_confidence_at_the_true_match(kind):
    config = replace(LossConfig(), coarse=kind)
    index = torch.arange(3)[None]
    valid = torch.ones(1, 3, dtype=torch.bool)
    sure = losses.coarse_loss(confidence(0.8, 0.1), index, valid, config)
    unsure = losses.coarse_loss(confidence(0.4, 0.3), index, valid, config)
    wrong = losses.coarse_loss(confidence(0.1, 0.45), index, valid, config)
    assert sure < unsure < wrong
    if kind == "nll":
        assert sure.item() == pytest.approx(-math.log(0.8), rel=1e-6)


def test_focal_loss_hand_computed():
    """One positive at 0.8 and eight negatives at 0.1 (alpha 0.25, gamma 2)."""
    config = LossConfig()
    valid = torch.tensor([[True, False, False]])
    loss = losses.coarse_loss(confidence(0.8, 0.1), torch.arange(3)[None], valid, config)
    positive = -0.25 * 0.2**2 * math.log(0.8)
    # Negatives: every entry but the one positive, two of them at 0.8 on the diagonal.
    negative = (6 * -0.75 * 0.1**2 * math.log(0.9) + 2 * -0.75 * 0.8**2 * math.log(0.2)) / 8
    assert loss.item() == pytest.approx(positive + negative, rel=1e-5)


def test_coarse_loss_without_positives_is_zero_and_unknown_kind_fails():
    conf = confidence(0.5, 0.2).requires_grad_()
    loss = losses.coarse_loss(
        conf, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.bool), LossConfig()
    )
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="unknown coarse loss"):
        losses.coarse_loss(
            conf,
            torch.zeros(1, 3, dtype=torch.long),
            torch.ones(1, 3, dtype=torch.bool),
            replace(LossConfig(), coarse="hinge"),
        )


def test_fine_loss_hand_computed():
    pred = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [9.0, 9.0]]])
    true = torch.tensor([[[0.0, 0.0], [0.0, 3.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    # Errors in fine pixels (stride 2): (0.5, 0) and (0, -1.5) -> squared 0.25, 2.25.
    assert losses.fine_loss(pred, true, valid, 2).item() == pytest.approx(1.25)
    assert losses.fine_loss(pred, true, torch.zeros_like(valid), 2).item() == 0.0


def kl_both_ways(student: np.ndarray, teacher: np.ndarray, temperature: float) -> float:
    """Reference: mean row-wise and column-wise KL(teacher || student) of softmax(x / T)."""

    def softmax(x, axis):
        e = np.exp(x / temperature - (x / temperature).max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    total = 0.0
    for axis in (1, 0):
        p, q = softmax(teacher, axis), softmax(student, axis)
        total += (p * np.log(p / q)).sum(axis=axis).mean()
    return total / 2


def test_distillation_loss():
    rng = np.random.default_rng(0)
    teacher = rng.normal(0, 3, (4, 5))
    student = rng.normal(0, 3, (4, 5))

    def as_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float64)[None]

    same = losses.distillation_loss(as_tensor(teacher), as_tensor(teacher), 5.0)
    assert abs(same.item()) < 1e-12
    for temperature in (1.0, 4.0):
        value = losses.distillation_loss(as_tensor(student), as_tensor(teacher), temperature).item()
        assert value > 0
        # Documented scaling: the KL of softened distributions times T^2.
        assert value == pytest.approx(kl_both_ways(student, teacher, temperature) * temperature**2, rel=1e-9)
    # With the T^2 factor the size of the term settles as T grows (the KL alone ~ 1/T^2).
    large = [losses.distillation_loss(as_tensor(student), as_tensor(teacher), t).item() for t in (50, 100)]
    assert large[1] == pytest.approx(large[0], rel=0.05)


def test_combine_weights():
    config = replace(LossConfig(), alpha=0.3, amplification=10.0)
    supervised, distill = torch.tensor(2.0), torch.tensor(3.0)
    assert losses.combine(supervised, distill, config).item() == pytest.approx(0.3 * 2 + 0.7 * 10 * 3)
    assert losses.combine(supervised, None, config) is supervised


# --- homography ground truth ----------------------------------------------------------


def test_identity_matches_every_cell_to_itself():
    targets = targets_from_homography(np.eye(3), GRID, STRIDE, SIZE)
    n = GRID[0] * GRID[1]
    assert np.array_equal(targets.match_index1, np.arange(n))
    assert targets.coarse_valid.all() and targets.fine_valid.all()
    assert np.abs(targets.offset1).max() == 0


def test_translation_by_whole_cells_shifts_indices():
    dx, dy = 2, 1  # cells
    shift = np.array([[1, 0, dx * STRIDE], [0, 1, dy * STRIDE], [0, 0, 1]], float)
    targets = targets_from_homography(shift, GRID, STRIDE, SIZE)
    rows, cols = np.divmod(np.arange(GRID[0] * GRID[1]), GRID[1])
    inside = (cols + dx < GRID[1]) & (rows + dy < GRID[0])
    assert np.array_equal(targets.fine_valid, inside)
    assert np.array_equal(targets.coarse_valid, inside)
    expected = (rows + dy) * GRID[1] + cols + dx
    assert np.array_equal(targets.match_index1[inside], expected[inside])
    assert np.abs(targets.offset1).max() == 0


def test_zoom_out_keeps_one_mutual_match_per_target_cell():
    """Image1 shows image0 at half size: four image0 cells fall in each image1 cell,
    only the one whose cell the image1 centre projects back into is a positive."""
    half = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])  # about pixel centres
    targets = targets_from_homography(half, GRID, STRIDE, SIZE)
    assert targets.fine_valid.all()
    positives = targets.match_index1[targets.coarse_valid]
    assert len(np.unique(positives)) == len(positives)  # one-to-one
    assert targets.coarse_valid.sum() <= targets.fine_valid.sum() // 4 + 1
    assert targets.coarse_valid.sum() >= 4
    assert np.abs(targets.offset1).max() <= STRIDE / 2


# --- gradient accumulation ------------------------------------------------------------


def _same_target_batch(pairs: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`pairs` random image pairs (float64) sharing one ground truth (a shift), so that
    every pair has the same number of positives."""
    shift = np.array([[1, 0, 5.0], [0, 1, -3.0], [0, 0, 1]])
    targets = targets_from_homography(shift, GRID, STRIDE, SIZE)
    images = torch.rand(
        2 * pairs, 1, SIZE[1], SIZE[0], dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )
    return {
        "image0": images[:pairs],
        "image1": images[pairs:],
        "match_index1": torch.from_numpy(targets.match_index1).expand(pairs, -1),
        "coarse_valid": torch.from_numpy(targets.coarse_valid).expand(pairs, -1),
        "fine_valid": torch.from_numpy(targets.fine_valid).expand(pairs, -1),
        "offset1": torch.from_numpy(targets.offset1).double().expand(pairs, -1, -1),
    }


def test_validation_split_keeps_crops_with_their_photo_and_is_stable(tmp_path):
    names = [f"{i:04d}_photo{i}.jpg" for i in range(60)]
    names += [f"{i:04d}_photo{i}_crop.jpg" for i in range(0, 60, 3)]
    # A renamed file whose index entry says it is photo 7: it goes where photo 7 goes.
    names.append("0999_renamed.jpg")
    sources = [f"pkg:photos/{n.removesuffix('.jpg').removesuffix('_crop')}" for n in names]
    index = {"images": [{"file": n, "source": source} for n, source in zip(names, sources, strict=True)]}
    index["images"][-1]["source"] = "pkg:photos/0007_photo7"
    (tmp_path / "index.json").write_text(json.dumps(index))
    files = [tmp_path / n for n in sorted(names)]
    train_files, val_files = split_images(files, val_share=0.1)
    assert len(val_files) >= 6 and not set(train_files) & set(val_files)
    assert set(train_files) | set(val_files) == set(files)
    held = {p.name for p in val_files}
    for i in range(0, 60, 3):
        assert (f"{i:04d}_photo{i}.jpg" in held) == (f"{i:04d}_photo{i}_crop.jpg" in held)
    assert ("0007_photo7.jpg" in held) == ("0999_renamed.jpg" in held)
    # Removing a training photo (60 -> 59 sources, still 6 held out) moves nothing.
    removed = next(p for p in train_files if "_crop" not in p.name and "renamed" not in p.name)
    assert split_images([p for p in files if p != removed], val_share=0.1)[1] == val_files
    assert split_images(files, val_share=0.1, seed=1)[1] != val_files


def test_one_step_of_two_micro_batches_equals_one_step_of_the_whole_batch():
    """The trainer's `optimizer_step` on 8 pairs as 2 micro-batches of 4 leaves the same
    gradients, parameters and logged losses as on one micro-batch of 8.

    This holds only where the loss is an average of per-pair terms of equal weight:
    BatchNorm is in eval mode (in train mode it normalises with the statistics of the
    batch at hand), and every pair has the same number of positives (the coarse loss
    averages over the positives of one forward pass). No clipping (an infinite
    threshold): clipping both to the same norm would hide a wrongly scaled sum, and so
    would AdamW's first step, which is invariant to the gradient's scale.
    """
    torch.manual_seed(0)
    initial = CoarseLoFTR(TINY).double().eval()
    teacher = CoarseLoFTR(TINY).double().eval()
    config = replace(TrainConfig(), optim=replace(OptimConfig(), grad_clip=math.inf))
    batch = _same_target_batch(8)
    cpu = torch.device("cpu")

    def step(micro: int) -> tuple[CoarseLoFTR, dict[str, float]]:
        model = copy.deepcopy(initial)
        parts = [{k: v[start : start + micro] for k, v in batch.items()} for start in range(0, 8, micro)]
        optimizer = make_optimizer(model, config)
        running = optimizer_step(model, optimizer, make_scaler(config, cpu), parts, config, teacher)
        return model, running

    (whole, whole_losses), (accumulated, accumulated_losses) = step(8), step(4)
    assert whole_losses.keys() == accumulated_losses.keys() >= {"loss", "coarse", "fine", "distill"}
    for name, value in whole_losses.items():
        assert accumulated_losses[name] == pytest.approx(value, rel=1e-9), name
    moved = 0
    for (name, a), b, start in zip(whole.named_parameters(), accumulated.parameters(), initial.parameters()):
        assert a.grad is not None and b.grad is not None, name
        assert torch.allclose(a.grad, b.grad, rtol=1e-8, atol=1e-12), name
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), name
        moved += not torch.equal(a, start)
    assert moved == len(list(initial.parameters()))  # the step changed every parameter


def test_no_mixed_precision_on_a_cpu(tmp_path, photo_folder, restore_threads):
    """`amp` is on by default but for CUDA only: on a CPU the trainer's scaler is off,
    its forward passes run without autocast (float32 outputs), and a real `train` run
    saves a disabled scaler. The same probe sees autocast when a scaler is on, so it
    can tell."""
    config = TrainConfig()
    assert config.optim.amp
    cpu = torch.device("cpu")
    assert not make_scaler(config, cpu).is_enabled()

    seen: list[tuple[bool, torch.dtype]] = []

    def probe(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            seen.append((torch.is_autocast_enabled("cpu"), output.dtype))

    torch.manual_seed(0)
    model = CoarseLoFTR(TINY)
    batch = {k: v.float() if v.is_floating_point() else v for k, v in _same_target_batch(2).items()}
    with torch.nn.modules.module.register_module_forward_hook(probe):
        optimizer_step(model, make_optimizer(model, config), make_scaler(config, cpu), [batch], config)
        assert seen and all(not autocast and dtype == torch.float32 for autocast, dtype in seen)
        seen.clear()
        enabled = torch.amp.GradScaler("cpu", enabled=True)
        optimizer_step(model, make_optimizer(model, config), enabled, [batch], config)
        assert seen and all(autocast for autocast, _ in seen)
        seen.clear()

        files = sorted(photo_folder.iterdir())
        pairs = HomographyPairs(files, SIZE, STRIDE, 4, config.augment, seed=0)
        train(tiny_run_config(4), pairs, pairs, tmp_path / "run", model_config=TINY)
    assert seen and all(not autocast and dtype == torch.float32 for autocast, dtype in seen)
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert checkpoint["scaler_state_dict"] == {}  # what a disabled GradScaler saves


# --- resumable training ---------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """Four small textured photos (smooth noise, so patches are distinctive)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(4):
        noise = rng.random((24, 32)).astype(np.float32)
        photo = cv2.resize(noise, (128, 96), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"photo{i}.png"), (np.clip(photo, 0, 1) * 255).astype(np.uint8))
    return folder


def tiny_run_config(total_pairs: int) -> TrainConfig:
    # No lr milestones: the schedule must not depend on total_pairs, which the
    # interrupted run below extends on resume.
    return replace(
        TrainConfig(),
        model="tiny",
        image_size=SIZE,
        total_pairs=total_pairs,
        val_pairs=2,
        val_every_pairs=4,
        num_threads=1,
        optim=replace(OptimConfig(), batch_size=4, micro_batch=2, warmup_steps=1, milestones=()),
    )


@pytest.fixture
def restore_threads():
    """train() sets torch's thread count for the process; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_resume_continues_like_an_uninterrupted_run(photo_folder, tmp_path, restore_threads):
    files = sorted(photo_folder.iterdir())
    train_set = HomographyPairs(files[:3], SIZE, STRIDE, 16, TrainConfig().augment, seed=0)
    val_set = HomographyPairs(files[3:], SIZE, STRIDE, 2, TrainConfig().augment, seed=1)

    train(tiny_run_config(16), train_set, val_set, tmp_path / "straight", model_config=TINY)
    first = train(tiny_run_config(8), train_set, val_set, tmp_path / "split", model_config=TINY)
    assert (first.pairs_seen, first.steps) == (8, 2)
    resumed = train(
        tiny_run_config(16), train_set, val_set, tmp_path / "split", resume=True, model_config=TINY
    )
    assert (resumed.pairs_seen, resumed.steps) == (16, 4)
    assert [r["pairs"] for r in resumed.history] == [4, 8, 12, 16]

    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    assert b["state"]["pairs_seen"] == 16 and b["state"]["steps"] == 4
    steps = {int(s["step"]) for s in b["optimizer_state_dict"]["state"].values()}
    assert steps == {4}  # AdamW's moments carried over
    for name, value in a["model_state_dict"].items():
        assert torch.allclose(value.float(), b["model_state_dict"][name].float(), atol=1e-5), name
    # The run actually trained: weights moved away from the initialisation.
    torch.manual_seed(0)
    initial = CoarseLoFTR(TINY).state_dict()
    assert any(not torch.allclose(initial[k].float(), v.float()) for k, v in a["model_state_dict"].items())
    history = json.loads((tmp_path / "split" / "history.json").read_text())
    assert "val_median_error_px" in history[-1] and "train_loss" in history[0]


#: TINY with a second (stride 2) and a third (stride 1) level, two-layer projections.
TINY_THREE_LEVELS = replace(
    TINY,
    backbone=replace(TINY.backbone, fine2_stage=1),
    fine_depth=2,
    fine2_dim=4,
    fine2_kernel=3,
    fine2_depth=2,
    fine3_dim=4,
)


def test_refinement_only_run_trains_the_heads_and_nothing_else(photo_folder, tmp_path, restore_threads):
    """`trainable="refinement"` from a released-format checkpoint: the pair count goes
    on from it, the heads' parameters move, and every other tensor (BatchNorm running
    statistics included) stays bit for bit; the training steps never build the coarse
    matrix."""
    torch.manual_seed(0)
    start = CoarseLoFTR(TINY_THREE_LEVELS)
    released = tmp_path / "student.pt"
    position = {"pairs_seen": 8, "steps": 2, "wall_seconds": 1.0, "warmup_origin": 0}
    torch.save(
        {"config": TINY_THREE_LEVELS.to_dict(), "model_state_dict": start.state_dict(), "training": position},
        released,
    )
    files = sorted(photo_folder.iterdir())
    pairs = HomographyPairs(files, SIZE, STRIDE, 16, TrainConfig().augment, seed=0)
    val_pairs = HomographyPairs(files, SIZE, STRIDE, 2, TrainConfig().augment, seed=1)  # one micro-batch
    config = replace(tiny_run_config(16), trainable="refinement", val_every_pairs=1000)
    matrices = 0

    def count(*_):
        nonlocal matrices
        matrices += 1

    hook = torch.nn.modules.module.register_module_forward_hook(
        # Either module forms a cells x cells matrix: training's DualSoftmax, predict's MutualNearest.
        lambda module, inputs, output: (
            count() if type(module).__name__ in ("DualSoftmax", "MutualNearest") else None
        )
    )
    try:
        state = train(
            config, pairs, val_pairs, tmp_path / "run", model_config=TINY_THREE_LEVELS, init_from=released
        )
    finally:
        hook.remove()
    assert (state.pairs_seen, state.steps) == (16, 4)
    assert {"train_fine", "train_fine2", "train_fine3"} <= state.history[-1].keys()  # every level learns
    # Two validations, of the starting weights and at the end; none in training steps.
    assert matrices == 2
    assert state.history[0]["pairs"] == 8 and "val_median_error_px" in state.history[0]
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model_state_dict"]
    for name, value in start.state_dict().items():
        in_head = name.startswith(("fine_head.", "fine2_head.", "fine3_head."))
        if in_head and value.is_floating_point() and "running" not in name:
            assert not torch.equal(value, after[name]), f"{name} did not learn"
        elif not in_head:
            assert torch.equal(value, after[name]), f"{name} moved although frozen"


def test_unknown_trainable_part_fails(photo_folder, tmp_path):
    files = sorted(photo_folder.iterdir())
    pairs = HomographyPairs(files, SIZE, STRIDE, 4, TrainConfig().augment, seed=0)
    with pytest.raises(ValueError, match="trainable"):
        train(replace(tiny_run_config(4), trainable="backbone"), pairs, pairs, tmp_path, model_config=TINY)


# --- the command ----------------------------------------------------------------------


def test_train_command_end_to_end(photo_folder, tmp_path):
    """`coarse-loftr train` for two steps with depth pairs mixed in writes a loadable
    checkpoint and a history; bad options fail with one line."""
    scene = PlaneScene((128, 96), focal=120.0).write(tmp_path / "scene")
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "coarse_loftr",
        "train",
        "--images",
        str(photo_folder),
        "--run-dir",
        str(run_dir),
        "--size",
        "64x48",
        "--pairs",
        "8",
        "--batch-size",
        "4",
        "--micro-batch",
        "2",
        "--val-pairs",
        "2",
        "--val-every",
        "4",
        "--threads",
        "1",
        "--milestones",
        "0.5",
        "--corner-jitter",
        "0.2",
        "--max-shift",
        "0.05",
        "--max-rotation",
        "90",
        "--depth-scenes",
        str(scene),
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mixing 2 depth pairs" in result.stderr
    checkpoint = torch.load(run_dir / "last.pt", weights_only=False)
    assert checkpoint["state"]["pairs_seen"] == 8
    assert checkpoint["train_config"]["depth"]["share"] == 0.5
    assert list(checkpoint["train_config"]["optim"]["milestones"]) == [0.5]
    augment = checkpoint["train_config"]["augment"]
    assert (augment["corner_jitter"], augment["max_shift"], augment["max_rotation_deg"]) == (0.2, 0.05, 90)
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["pairs"] for r in history] == [4, 8]
    assert all(math.isfinite(r["train_loss"]) for r in history)

    def refused(arguments: list[str]) -> str:
        """The command's stderr, once it has refused `arguments` (exit 2, no traceback)."""
        run = subprocess.run(arguments, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
        return run.stderr

    assert "depth scene folder not found" in refused([*command[:-1], str(tmp_path / "missing")])
    assert "strictly between 0 and 1" in refused(
        [*command[:4], "--run-dir", str(tmp_path / "x"), "--milestones", "0.5,1.2"]
    )
    assert "--corner-jitter and --max-shift must be in" in refused(
        [*command[:6], "--run-dir", str(tmp_path / "y"), "--corner-jitter", "0.6"]
    )
    assert "--max-rotation must be in [0, 180] degrees" in refused(
        [*command[:6], "--run-dir", str(tmp_path / "z"), "--max-rotation", "200"]
    )
