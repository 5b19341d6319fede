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
from coarse_loftr.inference.weights import ROLES

from .trainer import training_position

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


#: What each role's model is for, as the manifest's descriptions say it.
USES = {"default": "uploads, CLI, Matcher() (default)", "live": "live video"}


def describe(size: tuple[int, int], stride: int, roles: list[str]) -> str:
    """The manifest's description of a model, e.g. 'live video; 40x30 coarse grid'."""
    return _with_uses(f"{size[0] // stride}x{size[1] // stride} coarse grid", roles)


def _with_uses(grid: str, roles: list[str]) -> str:
    return "; ".join([USES[role] for role in roles] + [grid])


def model_key(name: str, size: tuple[int, int]) -> str:
    """The manifest entry (and file stem) of a released model, e.g. 'student_640x480'."""
    return f"{name}_{size[0]}x{size[1]}"


def release(
    checkpoint: Path,
    out_dir: Path,
    sizes: list[tuple[int, int]],
    default_size: tuple[int, int],
    name: str,
    live_size: tuple[int, int] | None = None,
    roles: tuple[str, ...] = ROLES,
) -> list[ReleasedModel]:
    """Write out_dir/{name}.pt, {name}_{W}x{H}.onnx per size, and merge the entries into
    out_dir/manifest.json (other models already listed there stay, but for those of a
    released size that no role names any more: one size, one model). The manifest's
    `default` and `live` roles (see `inference.weights`) name the entries of
    `default_size` and `live_size` (None: the default's); only the `roles` listed move
    to this release, so that two checkpoints can share a folder (the others keep the
    entries an earlier release gave them). The models of the roles taken also get their
    split graphs (`export_split_onnx`), which the stream and the rotation search run; a
    size without a role loses any split graphs an earlier release left."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"roles must be among {', '.join(ROLES)}, got {', '.join(roles) or 'none'}")
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    keys = [model_key(name, size) for size in sizes]
    chosen = {"default": default_size, "live": live_size or default_size}
    owners = {}  # role -> the manifest entry it names after this release
    for role in ROLES:
        if role in roles:
            owners[role] = model_key(name, chosen[role])
        elif manifest.get(role) in set(manifest["models"]) | set(keys):
            owners[role] = manifest[role]
        else:
            raise ValueError(f"no {role} model in {manifest_path} to keep; release one for that role too")
    out_dir.mkdir(parents=True, exist_ok=True)
    model, config = load_checkpoint(checkpoint)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = training_position(raw) if isinstance(raw, dict) else {}
    slim = out_dir / f"{name}.pt"
    # Weights and architecture only: the optimiser state would triple the file.
    torch.save({"config": config.to_dict(), "model_state_dict": model.state_dict(), "training": state}, slim)
    released = []
    for size, key in zip(sizes, keys):
        taken = [role for role in ROLES if owners[role] == key]
        onnx_path = out_dir / f"{key}.onnx"
        report = export_onnx(model, onnx_path, size)
        parity = report.summary().splitlines()[-1]
        split = None
        if taken:
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
            "description": describe(size, config.coarse_stride, taken),
            "sha256": _sha256(onnx_path),
        }
        released.append(ReleasedModel(key, onnx_path, size, parity, split))
    _retire_replaced(out_dir, manifest, keys, sizes, set(owners.values()))
    for key, entry in manifest["models"].items():
        if key not in keys:  # another release's model: its grid stays, its roles may have moved
            grid = entry.get("description", "").split("; ")[-1]
            entry["description"] = _with_uses(grid, [role for role in ROLES if owners[role] == key])
    manifest.update(owners)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return released


def _retire_replaced(
    out_dir: Path, manifest: dict, keys: list[str], sizes: list[tuple[int, int]], kept: set[str]
) -> None:
    """Drop from `manifest` (and from `out_dir`) the entries of another release at one of
    `sizes` that no role names any more, so that one size means one model; a checkpoint
    goes with them once no entry uses it."""
    released_sizes = set(sizes)
    replaced = {
        key: entry
        for key, entry in manifest["models"].items()
        if key not in keys and key not in kept and tuple(entry["input_size"]) in released_sizes
    }
    for key, entry in replaced.items():
        del manifest["models"][key]
        onnx_path = out_dir / entry["onnx"]
        for path in (onnx_path, *split_paths(onnx_path)):
            path.unlink(missing_ok=True)
    in_use = {entry.get("checkpoint") for entry in manifest["models"].values()}
    for checkpoint in {entry.get("checkpoint") for entry in replaced.values()} - in_use:
        if checkpoint:
            (out_dir / checkpoint).unlink(missing_ok=True)
