"""Checkpoint formats: this project's, the published Coarse_LoFTR_TRT one, LoFTR's
outdoor_ds.ckpt and bare state dicts; strict loading with named errors."""

from __future__ import annotations

import ast

import pytest
import torch
from conftest import SHARED

from coarse_loftr.inference.checkpoint import load_checkpoint, read_checkpoint
from coarse_loftr.inference.config import get_preset
from coarse_loftr.inference.model import CoarseLoFTR

KEYS_TSV = SHARED / "reference" / "coarse_loftr_trt_student_keys.tsv"
needs_keys = pytest.mark.skipif(not KEYS_TSV.is_file(), reason="reference key list not present")
UNUSED_FPN = (
    "backbone.layer3_outconv.",
    "backbone.layer3_outconv2.",
    "backbone.layer2_outconv.",
    "backbone.layer2_outconv2.",
)


def published_state() -> dict[str, torch.Tensor]:
    """Random tensors with every name, shape and dtype of the published student."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for line in KEYS_TSV.read_text().splitlines():
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


@needs_keys
@pytest.mark.parametrize("container", ["published", "bare"])
def test_published_student_loads_by_shape(tmp_path, container):
    state = published_state()
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


def test_outdoor_ds_like_checkpoint_loads(tmp_path):
    torch.manual_seed(3)
    state = CoarseLoFTR(get_preset("loftr_outdoor")).state_dict()
    content = {f"matcher.{k}": v for k, v in state.items()}
    fine = {
        "matcher.loftr_fine.layers.0.q_proj.weight": torch.randn(128, 128),
        "matcher.fine_preprocess.down_proj.weight": torch.randn(128, 256),
        "matcher.backbone.layer1_outconv.weight": torch.randn(196, 128, 1, 1),
        "matcher.backbone.layer2_outconv2.0.weight": torch.randn(196, 196, 3, 3),
    }
    path = tmp_path / "outdoor_ds.ckpt"
    torch.save({"state_dict": {**content, **fine}}, path)
    loaded = read_checkpoint(path)
    assert (loaded.source_format, loaded.config.name) == ("lightning", "loftr_outdoor")
    assert sorted(loaded.ignored_keys) == sorted(k[len("matcher.") :] for k in fine)
    assert_reproduces(loaded.model, state)


def test_project_checkpoint_keeps_its_config(tmp_path):
    torch.manual_seed(4)
    model = CoarseLoFTR(get_preset("student"))
    path = tmp_path / "student.pt"
    torch.save({"config": model.config.to_dict(), "model_state_dict": model.state_dict(), "step": 10}, path)
    loaded_model, config = load_checkpoint(path)
    assert config == model.config
    assert_reproduces(loaded_model, model.state_dict())


@needs_keys
def test_dropped_key_is_named(tmp_path):
    state = published_state()
    del state["loftr_coarse.layers.2.k_proj.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"missing: loftr_coarse\.layers\.2\.k_proj\.weight"):
        load_checkpoint(tmp_path / "broken.pt")


@needs_keys
def test_changed_shape_is_named(tmp_path):
    state = published_state()
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
