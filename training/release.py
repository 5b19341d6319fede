"""Package a trained checkpoint as the shipped weights: a slim PyTorch file, static ONNX
graphs at the chosen input sizes, the manifest `inference.weights` reads, and a card."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.checkpoint import load_checkpoint
from inference.export import export_onnx

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ReleasedModel:
    key: str
    onnx: Path
    input_size: tuple[int, int]
    parity: str


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release(checkpoint: Path, out_dir: Path, sizes: list[tuple[int, int]],
            default_size: tuple[int, int], name: str, descriptions: dict[tuple[int, int], str]
            ) -> list[ReleasedModel]:
    """Write out_dir/{name}.pt, {name}_{W}x{H}.onnx per size, and merge the entries into
    out_dir/manifest.json (other models already listed there stay)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model, config = load_checkpoint(checkpoint)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = raw.get("state", {}) if isinstance(raw, dict) else {}
    slim = out_dir / f"{name}.pt"
    # Weights and architecture only: the optimiser state would triple the file.
    torch.save({"config": config.to_dict(), "model_state_dict": model.state_dict(),
                "training": state}, slim)
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    released = []
    for size in sizes:
        key = f"{name}_{size[0]}x{size[1]}"
        onnx_path = out_dir / f"{key}.onnx"
        report = export_onnx(model, onnx_path, size)
        parity = report.summary().splitlines()[-1]
        manifest["models"][key] = {
            "onnx": onnx_path.name,
            "checkpoint": slim.name,
            "input_size": list(size),
            "description": descriptions.get(size, ""),
            "sha256": _sha256(onnx_path),
        }
        released.append(ReleasedModel(key, onnx_path, size, parity))
    manifest["default"] = f"{name}_{default_size[0]}x{default_size[1]}"
    if manifest["default"] not in manifest["models"]:
        raise ValueError(f"default {manifest['default']} is not among the released models")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return released
