"""`coarse-loftr release`: a training checkpoint becomes a weights folder the Matcher loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixture_data import PAIRS

from coarse_loftr.inference.graph import split_paths

ROOT = Path(__file__).resolve().parents[1]


def release_cli(
    checkpoint: Path, out: Path, *options: str, timeout: int = 120
) -> subprocess.CompletedProcess:
    """`coarse-loftr release CHECKPOINT --out OUT OPTIONS...` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "coarse_loftr", "release", str(checkpoint), "--out", str(out), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def release_roles(
    checkpoint: Path, out: Path, default: str, live: str, *options: str, timeout: int = 120
) -> subprocess.CompletedProcess:
    """`release_cli` of the sizes of both roles, `default` for uploads and `live` for the
    stream; fails the test if the release does."""
    sizes = ",".join(dict.fromkeys([live, default]))
    result = release_cli(
        checkpoint, out, "--sizes", sizes, "--default", default, "--live", live, *options, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result


def write_training_checkpoint(folder: Path, preset: str) -> Path:
    """A random-initialised preset saved in the trainer's format (config + model +
    optimiser state)."""
    import torch

    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.model import CoarseLoFTR

    torch.manual_seed(1)
    model = CoarseLoFTR(get_preset(preset))
    optimizer = torch.optim.AdamW(model.parameters())
    path = folder / "last.pt"
    torch.save(
        {
            "config": model.config.to_dict(),
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "state": {"pairs_seen": 64, "steps": 8, "wall_seconds": 12.0},
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory) -> Path:
    return write_training_checkpoint(tmp_path_factory.mktemp("run"), "student")


def test_release_writes_a_folder_the_matcher_loads(training_checkpoint, tmp_path):
    out = tmp_path / "weights"
    result = release_cli(
        training_checkpoint,
        out,
        "--sizes",
        "320x240,160x120,224x168",
        "--default",
        "320x240",
        "--live",
        "160x120",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "-> OK" in result.stdout  # the export's parity line
    # The two roles' models come with their split graphs; a size without a role, without.
    for stem, split in (("student_320x240", True), ("student_160x120", True), ("student_224x168", False)):
        assert all(path.is_file() == split for path in split_paths(out / f"{stem}.onnx")), stem
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["default"] == "student_320x240" and manifest["live"] == "student_160x120"
    assert set(manifest["models"]) == {"student_320x240", "student_160x120", "student_224x168"}
    assert manifest["models"]["student_160x120"]["description"] == "live video; 20x15 coarse grid"
    import torch

    slim = torch.load(out / "student.pt", map_location="cpu", weights_only=True)
    assert set(slim) == {"config", "model_state_dict", "training"}  # no optimiser state
    assert slim["training"]["pairs_seen"] == 64
    # Released again from that slim file, the weights keep their place in training.
    again = release_cli(out / "student.pt", tmp_path / "again", "--sizes", "160x120", timeout=300)
    assert again.returncode == 0, again.stderr
    assert torch.load(tmp_path / "again" / "student.pt", weights_only=True)["training"]["pairs_seen"] == 64

    from coarse_loftr.inference import Matcher
    from coarse_loftr.inference.io import read_image

    image = read_image(PAIRS / "0001_a.jpg")  # 640x480
    for size, matcher in (
        ((160, 120), Matcher(weights=out, role="live", image0_cache=1)),
        ((320, 240), Matcher(weights=out)),
    ):
        assert matcher.input_size == size
        result = matcher.match(image, image, threshold=0.0)
        assert len(result) > 0
        # Keypoints of image0 sit on that model's cell centres: 8 input px per cell, scaled
        # to the 640x480 original.
        cell = 8 * 640 / size[0]
        lattice = (result.keypoints0 + 0.5) / cell - 0.5
        np.testing.assert_allclose(lattice, np.round(lattice), atol=1e-3)


def test_a_size_that_loses_its_role_loses_its_split_graphs(training_checkpoint, tmp_path):
    """Released again with the roles moved, the old default's split graphs (which hold the
    earlier weights) are deleted rather than left beside the new pair graph."""
    first = release_cli(training_checkpoint, tmp_path, "--sizes", "160x120,224x168", "--default", "224x168")
    assert first.returncode == 0, first.stderr
    assert all(path.is_file() for path in split_paths(tmp_path / "student_224x168.onnx"))
    again = release_cli(training_checkpoint, tmp_path, "--sizes", "160x120,224x168", "--default", "160x120")
    assert again.returncode == 0, again.stderr
    assert not any(path.exists() for path in split_paths(tmp_path / "student_224x168.onnx"))
    assert all(path.is_file() for path in split_paths(tmp_path / "student_160x120.onnx"))
    assert (tmp_path / "student_224x168.onnx").is_file()


def test_release_refuses_a_default_outside_the_sizes(training_checkpoint, tmp_path):
    result = release_cli(training_checkpoint, tmp_path, "--sizes", "320x240", "--default", "640x480")
    assert result.returncode == 2
    assert "--default 640x480 is not among --sizes" in result.stderr
    result = release_cli(training_checkpoint, tmp_path, "--sizes", "320x240", "--live", "160x120")
    assert result.returncode == 2
    assert "--live 160x120 is not among --sizes" in result.stderr


def test_two_checkpoints_share_a_folder_one_role_each(training_checkpoint, tmp_path):
    """A 1/16-grid model released with --roles default joins the student's folder: the
    default moves to it, the live role stays with the student, and the descriptions say so."""
    release_roles(training_checkpoint, tmp_path, "224x168", "160x120")
    (tmp_path / "run16").mkdir()
    grid16 = write_training_checkpoint(tmp_path / "run16", "student16")
    second = release_cli(
        grid16, tmp_path, "--name", "student16", "--sizes", "320x240", "--roles", "default", timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert "default student16_320x240, live student_160x120" in second.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    descriptions = {key: entry["description"] for key, entry in manifest["models"].items()}
    assert descriptions == {
        "student_160x120": "live video; 20x15 coarse grid",
        "student_224x168": "28x21 coarse grid",
        "student16_320x240": "uploads, CLI, Matcher() (default); 20x15 coarse grid",
    }
    assert manifest["models"]["student16_320x240"]["checkpoint"] == "student16.pt"
    assert all(path.is_file() for path in split_paths(tmp_path / "student16_320x240.onnx"))

    from coarse_loftr.inference import Matcher
    from coarse_loftr.inference.io import read_image

    image = read_image(PAIRS / "0001_a.jpg")  # 640x480
    for size, stride, matcher in (
        ((320, 240), 16, Matcher(weights=tmp_path)),
        ((160, 120), 8, Matcher(weights=tmp_path, role="live")),
    ):
        assert matcher.input_size == size
        result = matcher.match(image, image, threshold=0.0)
        lattice = (result.keypoints0 + 0.5) / (stride * 640 / size[0]) - 0.5
        np.testing.assert_allclose(lattice, np.round(lattice), atol=1e-3)


def test_a_role_left_out_must_already_have_a_model(training_checkpoint, tmp_path):
    result = release_cli(training_checkpoint, tmp_path, "--sizes", "160x120", "--roles", "live")
    assert result.returncode == 2
    assert "no default model in" in result.stderr and "release one for that role too" in result.stderr
    assert not (tmp_path / "manifest.json").exists()
    result = release_cli(training_checkpoint, tmp_path, "--sizes", "160x120", "--roles", "default,stream")
    assert (
        result.returncode == 2 and "roles must be among default, live, got default, stream" in result.stderr
    )


def test_a_release_retires_the_models_it_replaces(training_checkpoint, tmp_path):
    """One size, one model: a release at sizes another checkpoint had drops that one's
    entries there unless a role still names them, and its checkpoint once nothing does."""
    release_roles(training_checkpoint, tmp_path, "320x240", "256x192")
    (tmp_path / "run16").mkdir()
    grid16 = write_training_checkpoint(tmp_path / "run16", "student16")
    args = ["--name", "student16", "--sizes", "320x240", "--roles", "default"]
    second = release_cli(grid16, tmp_path, *args, timeout=300)
    assert second.returncode == 0, second.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["models"]) == {"student_256x192", "student16_320x240"}  # the live one stays
    assert not (tmp_path / "student_320x240.onnx").exists()
    assert not any(path.exists() for path in split_paths(tmp_path / "student_320x240.onnx"))
    assert (tmp_path / "student.pt").is_file()  # the live model's checkpoint
    # Both roles at both sizes: nothing names the student any more, so its files go.
    release_roles(grid16, tmp_path, "320x240", "256x192", "--name", "student16", timeout=300)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["models"]) == {"student16_256x192", "student16_320x240"}
    assert not (tmp_path / "student.pt").exists() and not (tmp_path / "student_256x192.onnx").exists()
    from coarse_loftr.inference import Matcher

    assert Matcher(weights=tmp_path, role="live").input_size == (256, 192)
