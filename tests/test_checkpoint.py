"""Checkpoint formats: this project's, the published Coarse_LoFTR_TRT one, LoFTR's
outdoor_ds.ckpt and bare state dicts; strict loading with named errors."""

from __future__ import annotations

import ast

import pytest
import torch
from fixture_data import LOFTR_OUTDOOR_KEYS, PUBLISHED_CHECKPOINTS, PUBLISHED_STUDENT_KEYS

from coarse_loftr.inference.checkpoint import load_checkpoint, read_checkpoint
from coarse_loftr.inference.config import get_preset
from coarse_loftr.inference.model import CoarseLoFTR

UNUSED_FPN = (
    "backbone.layer3_outconv.",
    "backbone.layer3_outconv2.",
    "backbone.layer2_outconv.",
    "backbone.layer2_outconv2.",
)


def state_from_key_list(path) -> dict[str, torch.Tensor]:
    """Random tensors with every name, shape and dtype of a key list (name, shape, dtype)."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, shape, dtype = line.split("\t")
        shape = ast.literal_eval(shape)
        if dtype == "int64":
            state[name] = torch.randint(0, 1000, shape, generator=generator)
        elif "running_var" in name:  # variances must be positive for a usable network
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.2
    return state


def assert_reproduces(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("container", ["published", "bare"])
def test_published_student_loads_by_shape(tmp_path, container):
    state = state_from_key_list(PUBLISHED_STUDENT_KEYS)
    content = (
        state
        if container == "bare"
        else {
            "epoch": 7,
            "model_state_dict": state,
            "optimizer_state_dict": {"state": {}, "param_groups": []},
            "scaler_state_dict": {"scale": 1024.0},
        }
    )
    path = tmp_path / "LoFTR_teacher.pt"
    torch.save(content, path)
    loaded = read_checkpoint(path)
    assert loaded.config.name == "coarse_loftr_trt"
    assert loaded.source_format == ("state_dict" if container == "bare" else "coarse_loftr_trt")
    assert not loaded.model.training
    assert_reproduces(loaded.model, state)
    # Exactly the 1/4 FPN branch is dropped, and reported.
    assert loaded.ignored_keys and all(k.startswith(UNUSED_FPN) for k in loaded.ignored_keys)
    assert len(loaded.ignored_keys) + len(loaded.model.state_dict()) == len(state)


def test_outdoor_ds_checkpoint_loads(tmp_path):
    """Every tensor of LoFTR's outdoor_ds.ckpt (names and shapes from kornia's LoFTR, not
    from our model): the coarse level loads, the fine level is ignored and named."""
    content = state_from_key_list(LOFTR_OUTDOOR_KEYS)
    path = tmp_path / "outdoor_ds.ckpt"
    torch.save({"epoch": 29, "global_step": 1, "state_dict": content}, path)
    loaded = read_checkpoint(path)
    assert (loaded.source_format, loaded.config.name) == ("lightning", "loftr_outdoor")
    fine_only = ("loftr_fine.", "fine_preprocess.", "backbone.layer1_outconv", "backbone.layer2_outconv")
    assert loaded.ignored_keys and all(k.startswith(fine_only) for k in loaded.ignored_keys)
    state = {k[len("matcher.") :]: v for k, v in content.items()}
    assert_reproduces(loaded.model, state)
    # Only the fine level is left out: every coarse tensor of the file is used.
    assert set(loaded.model.state_dict()) | set(loaded.ignored_keys) == set(state)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["LoFTR_teacher.pt", "LoFTR_no_teacher.pt"])
def test_the_real_published_checkpoints_load_and_match(name):
    """The published Coarse_LoFTR_TRT files themselves (../shared/reference): recognised
    by shape, loaded strictly, and their dual softmax gives finite, normalised scores."""
    loaded = read_checkpoint(PUBLISHED_CHECKPOINTS / name)
    assert (loaded.source_format, loaded.config.name) == ("coarse_loftr_trt", "coarse_loftr_trt")
    file_keys = {line.split("\t")[0] for line in PUBLISHED_STUDENT_KEYS.read_text().splitlines() if line}
    assert set(loaded.model.state_dict()) | set(loaded.ignored_keys) == file_keys
    torch.manual_seed(0)
    image = torch.rand(1, 1, 480, 640)
    with torch.no_grad():
        output = loaded.model.eval()(image, image)
    assert output.grid_hw == (30, 40)  # the 1/16 grid of a 640x480 input
    conf = output.conf_matrix[0]
    assert torch.isfinite(conf).all() and conf.min() >= 0
    # A dual softmax: no row and no column sums to more than one.
    assert conf.sum(dim=1).max() <= 1 + 1e-4 and conf.sum(dim=0).max() <= 1 + 1e-4


def test_project_checkpoint_keeps_its_config(tmp_path):
    torch.manual_seed(4)
    model = CoarseLoFTR(get_preset("student"))
    path = tmp_path / "student.pt"
    torch.save({"config": model.config.to_dict(), "model_state_dict": model.state_dict(), "step": 10}, path)
    loaded_model, config = load_checkpoint(path)
    assert config == model.config
    assert_reproduces(loaded_model, model.state_dict())


def test_dropped_key_is_named(tmp_path):
    state = state_from_key_list(PUBLISHED_STUDENT_KEYS)
    del state["loftr_coarse.layers.2.k_proj.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"missing: loftr_coarse\.layers\.2\.k_proj\.weight"):
        load_checkpoint(tmp_path / "broken.pt")


def test_changed_shape_is_named(tmp_path):
    state = state_from_key_list(PUBLISHED_STUDENT_KEYS)
    state["loftr_coarse.layers.1.mlp.0.weight"] = torch.zeros(64, 63)
    torch.save(
        {"epoch": 1, "model_state_dict": state, "optimizer_state_dict": {}, "scaler_state_dict": {}},
        tmp_path / "broken.pt",
    )
    with pytest.raises(
        ValueError, match=r"loftr_coarse\.layers\.1\.mlp\.0\.weight expected \(64, 64\) got \(64, 63\)"
    ):
        load_checkpoint(tmp_path / "broken.pt")


def test_project_checkpoint_with_foreign_key_fails(tmp_path):
    model = CoarseLoFTR(get_preset("student"))
    state = dict(model.state_dict(), **{"loftr_coarse.extra.weight": torch.zeros(3)})
    torch.save({"config": model.config.to_dict(), "model_state_dict": state}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"unexpected: loftr_coarse\.extra\.weight"):
        load_checkpoint(tmp_path / "x.pt")


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a dict"):
        load_checkpoint(tmp_path / "list.pt")
