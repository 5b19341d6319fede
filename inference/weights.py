"""Which model files a `Matcher` loads.

A weights directory holds `manifest.json`:

    {"default": "student_640x480", "live": "student_320x240",
     "models": {"student_320x240": {"onnx": "student_320x240.onnx", "checkpoint": "student.pt",
                                    "input_size": [320, 240], "description": "..."}, ...}}

Two roles name an entry each: `default` (uploads, the CLI, `Matcher()`) and `live` (the
WebSocket stream, where frame rate matters more than the last pixel); a manifest without
`live` uses its default for both.

The shipped directory is the `coarse_loftr.weights` package. An input size with no ONNX
file is exported on the fly from the entry's checkpoint when PyTorch is installed,
into a cache keyed by the checkpoint's hash and the size.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import CoarseLoftrError
from .graph import split_paths
from .paths import WEIGHTS_DIR

MANIFEST = "manifest.json"
#: Manifest keys that name the model for a use: uploads and the CLI, or live video.
ROLES = ("default", "live")


class WeightsError(CoarseLoftrError):
    """No usable model files for the request; the message says what exists."""


@dataclass(frozen=True)
class ModelFiles:
    """onnx: the ONNX model to run; checkpoint: its PyTorch checkpoint, when known
    (the torch backend needs it); input_size: (width, height), when known before loading;
    split: its (reference, frame) graphs, when they lie beside it (`graph.split_paths`)."""

    onnx: Path
    checkpoint: Path | None = None
    input_size: tuple[int, int] | None = None
    split: tuple[Path, Path] | None = None


def _model_files(
    onnx: Path, checkpoint: Path | None = None, input_size: tuple[int, int] | None = None
) -> ModelFiles:
    split = split_paths(onnx)
    return ModelFiles(onnx, checkpoint, input_size, split if all(p.is_file() for p in split) else None)


def shipped_weights_dir() -> Path:
    """The folder of `coarse_loftr.weights` (model files installed with the package)."""
    return WEIGHTS_DIR


def cache_dir() -> Path:
    """Where on-the-fly exports go: $COARSE_LOFTR_CACHE or ~/.cache/coarse-loftr."""
    if "COARSE_LOFTR_CACHE" in os.environ:
        return Path(os.environ["COARSE_LOFTR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "coarse-loftr"


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 640x480, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return width, height


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise WeightsError(
            f"no {MANIFEST} in {folder}: no shipped weights were found "
            "(train and export a model, or pass an .onnx file)"
        )
    try:
        manifest = json.loads(path.read_text())
        models = manifest["models"]
        if not isinstance(models, dict) or not models:
            raise ValueError("'models' is empty")
        for name, entry in models.items():
            entry["input_size"] = tuple(int(v) for v in entry["input_size"])
            if len(entry["input_size"]) != 2:
                raise ValueError(f"{name}: input_size must be [width, height]")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise WeightsError(f"invalid {path}: {error}") from None
    return manifest


def _file(folder: Path, entry: dict, key: str) -> Path | None:
    name = entry.get(key)
    return folder / name if name and (folder / name).is_file() else None


def _checkpoint_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def export_from_checkpoint(checkpoint: Path, input_size: tuple[int, int]) -> Path:
    """ONNX of `checkpoint` at `input_size` (W, H), exported once into `cache_dir()`.

    Needs PyTorch; raises WeightsError when it is missing.
    """
    if importlib.util.find_spec("torch") is None:
        raise WeightsError("exporting a new input size needs PyTorch (pip install 'coarse-loftr[train]')")
    width, height = input_size
    target = cache_dir() / f"{checkpoint.stem}-{_checkpoint_digest(checkpoint)}-{width}x{height}.onnx"
    if target.is_file():
        return target
    # Imported here: the runtime path never loads torch unless an export is needed.
    from .checkpoint import load_checkpoint
    from .export import export_onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        model, _ = load_checkpoint(checkpoint)
        export_onnx(model.eval(), partial, (width, height))
        partial.replace(target)  # atomic: concurrent processes never see half a file
    finally:
        partial.unlink(missing_ok=True)
    return target


def resolve_weights(
    weights: str | Path | None = None, size: tuple[int, int] | None = None, role: str = "default"
) -> ModelFiles:
    """Model files for `weights` (None: the shipped folder; an .onnx file; or a folder
    with a manifest) at input `size` (W, H; None: the manifest's entry for `role`, one of
    `ROLES`). An .onnx file serves every role.

    Raises WeightsError when nothing fits, listing the sizes that exist.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if weights is not None and Path(weights).suffix.lower() == ".onnx":
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"ONNX model not found: {path}")
        return _model_files(path)
    folder = shipped_weights_dir() if weights is None else Path(weights)
    if not folder.is_dir():
        raise WeightsError(
            f"weights not found: {folder} (expected an .onnx file or a folder with {MANIFEST})"
        )
    manifest = _read_manifest(folder)
    models: dict[str, dict] = manifest["models"]
    default = manifest.get(role) or manifest.get("default")
    # The role's entry first, so that it wins among entries of the same size.
    ordered = sorted(models.items(), key=lambda item: item[0] != default)
    candidates = [entry for _, entry in ordered if size is None or entry["input_size"] == size]
    for entry in candidates[:1] if size is None else candidates:
        onnx = _file(folder, entry, "onnx")
        if onnx is not None:
            return _model_files(onnx, _file(folder, entry, "checkpoint"), entry["input_size"])
    # No ONNX file at this size: export one from a checkpoint (same size first).
    wanted = size or ordered[0][1]["input_size"]
    for _, entry in sorted(ordered, key=lambda item: item[1]["input_size"] != wanted):
        checkpoint = _file(folder, entry, "checkpoint")
        if checkpoint is not None and importlib.util.find_spec("torch") is not None:
            return ModelFiles(export_from_checkpoint(checkpoint, wanted), checkpoint, wanted)
    available = sorted(
        {
            f"{w}x{h}"
            for entry in models.values()
            for w, h in [entry["input_size"]]
            if _file(folder, entry, "onnx")
        }
    )
    raise WeightsError(
        f"no model for input size {wanted[0]}x{wanted[1]} in {folder}; available: "
        f"{', '.join(available) or 'none'}"
        + (
            ""
            if importlib.util.find_spec("torch")
            else " (other sizes need PyTorch to export from a checkpoint)"
        )
    )
