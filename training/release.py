"""Package a trained checkpoint as the shipped weights: a slim PyTorch file, static ONNX
graphs at the chosen input sizes and the manifest `inference.weights` reads. The card
(`weights/CARD.md`) is written by hand from the eval and bench runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from coarse_loftr.inference.checkpoint import load_checkpoint
from coarse_loftr.inference.export import export_onnx, export_split_onnx
from coarse_loftr.inference.graph import split_paths

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ReleasedModel:
    """key: manifest entry; onnx: the pair graph; split: its (reference, frame) graphs,
    for the sizes with a role; parity: the export's parity lines."""

    key: str
    onnx: Path
    input_size: tuple[int, int]
    parity: str
    split: tuple[Path, Path] | None = None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe(size: tuple[int, int], stride: int, roles: list[str]) -> str:
    """The manifest's description of a model, e.g. 'live video; 40x30 coarse grid'."""
    uses = {"default": "uploads, CLI, Matcher() (default)", "live": "live video"}
    grid = f"{size[0] // stride}x{size[1] // stride} coarse grid"
    return "; ".join([uses[role] for role in roles] + [grid])


def release(
    checkpoint: Path,
    out_dir: Path,
    sizes: list[tuple[int, int]],
    default_size: tuple[int, int],
    name: str,
    live_size: tuple[int, int] | None = None,
) -> list[ReleasedModel]:
    """Write out_dir/{name}.pt, {name}_{W}x{H}.onnx per size, and merge the entries into
    out_dir/manifest.json (other models already listed there stay). The manifest's
    `default` and `live` roles (see `inference.weights`) name the entries of
    `default_size` and `live_size` (None: the default's). The models of the two roles
    also get their split graphs (`export_split_onnx`), which the stream and the rotation
    search run; a size without a role loses any split graphs an earlier release left."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model, config = load_checkpoint(checkpoint)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = raw.get("state", {}) if isinstance(raw, dict) else {}
    slim = out_dir / f"{name}.pt"
    # Weights and architecture only: the optimiser state would triple the file.
    torch.save({"config": config.to_dict(), "model_state_dict": model.state_dict(), "training": state}, slim)
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    live_size = live_size or default_size
    released = []
    for size in sizes:
        roles = [role for role, chosen in (("default", default_size), ("live", live_size)) if chosen == size]
        key = f"{name}_{size[0]}x{size[1]}"
        onnx_path = out_dir / f"{key}.onnx"
        report = export_onnx(model, onnx_path, size)
        parity = report.summary().splitlines()[-1]
        split = None
        if roles:
            split_report = export_split_onnx(model, onnx_path, size)
            split = (split_report.reference, split_report.frame)
            parity += "; split " + split_report.summary().splitlines()[-1]
        else:
            # An earlier release's split of this size would pair its weights with this graph.
            for stale in split_paths(onnx_path):
                stale.unlink(missing_ok=True)
        manifest["models"][key] = {
            "onnx": onnx_path.name,
            "checkpoint": slim.name,
            "input_size": list(size),
            "description": describe(size, config.coarse_stride, roles),
            "sha256": _sha256(onnx_path),
        }
        released.append(ReleasedModel(key, onnx_path, size, parity, split))
    for role, size in (("default", default_size), ("live", live_size)):
        manifest[role] = f"{name}_{size[0]}x{size[1]}"
        if manifest[role] not in manifest["models"]:
            raise ValueError(f"{role} model {manifest[role]} is not among the released models")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return released
