"""Loading weights into `CoarseLoFTR` from every checkpoint format it meets (needs torch).

Formats, recognised from the container's keys:

* ``project``: this project's checkpoints, ``{"config": ModelConfig.to_dict(), "model_state_dict": ...}``;
* ``coarse_loftr_trt``: the published Coarse_LoFTR_TRT files (``LoFTR_teacher.pt``), ``{"epoch",
  "model_state_dict", "optimizer_state_dict", "scaler_state_dict"}``;
* ``lightning``: the original LoFTR ``outdoor_ds.ckpt``, ``{"state_dict": ...}`` with every key
  prefixed ``matcher.`` and fine-level tensors besides;
* ``state_dict``: a bare state dict.

Without a stored config the architecture is recognised from the tensor shapes among
`inference.config.PRESETS`. Loading is strict: every coarse tensor must be present with
its shape. Only tensors of parts a coarse-only model never computes (the 1/4 FPN
branch, LoFTR's fine level) are dropped, and reported as ignored.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import PRESETS, ModelConfig
from .model import CoarseLoFTR

log = logging.getLogger(__name__)

#: Top-level keys of the published Coarse_LoFTR_TRT training checkpoints.
PUBLISHED_KEYS = frozenset({"epoch", "model_state_dict", "optimizer_state_dict", "scaler_state_dict"})
LIGHTNING_PREFIX = "matcher."

# Tensors of branches that only feed LoFTR's 1/4 (fine) level. The FPN's `layer{k}_outconv`
# for the last stage is the coarse projection and is always part of the model, so these
# patterns are only consulted for keys the model does not have.
_UNUSED_PATTERNS = (
    re.compile(r"^backbone\.layer\d+_outconv\."),
    re.compile(r"^backbone\.layer\d+_outconv2\."),
    re.compile(r"^loftr_fine\."),
    re.compile(r"^fine_preprocess\."),
)


@dataclass
class LoadedCheckpoint:
    """A model with its weights and how they were found.

    source_format: "project", "coarse_loftr_trt", "lightning" or "state_dict";
    ignored_keys: checkpoint tensors of branches this model never computes.
    """

    model: CoarseLoFTR
    config: ModelConfig
    source_format: str
    ignored_keys: list[str] = field(default_factory=list)


@dataclass
class KeyMismatch:
    """How a state dict differs from what a model expects (the unused keys removed)."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # key, expected, found

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def size(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def describe(self, limit: int = 8) -> str:
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                shown = ", ".join(keys[:limit]) + (
                    f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
                )
                parts.append(f"{len(keys)} {label}: {shown}")
        if self.mismatched:
            shown = ", ".join(
                f"{k} expected {tuple(e)} got {tuple(g)}" for k, e, g in self.mismatched[:limit]
            )
            more = len(self.mismatched) - limit
            parts.append(
                f"{len(self.mismatched)} shape mismatches: {shown}" + (f" (+{more} more)" if more > 0 else "")
            )
        return "; ".join(parts)


def load_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> tuple[CoarseLoFTR, ModelConfig]:
    """Read a checkpoint of any supported format -> (model in eval mode on CPU, its config).

    Raises ValueError (naming the keys) when the tensors do not fit a known architecture,
    FileNotFoundError when the file is missing.
    """
    loaded = read_checkpoint(path, allow_pickle=allow_pickle)
    return loaded.model, loaded.config


def read_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> LoadedCheckpoint:
    """`load_checkpoint` with the details: format and ignored keys.

    allow_pickle: unpickle arbitrary objects (only for files you trust); by default only
    tensors and plain containers are read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: holds objects other than tensors and plain containers "
            f"({str(error).splitlines()[0]}); re-save only its state dict, or pass "
            "allow_pickle=True if you trust the file"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({error})") from None
    try:
        return checkpoint_from_content(content)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def checkpoint_from_content(content: object) -> LoadedCheckpoint:
    """Build the model from an already-loaded checkpoint object (see the module docstring)."""
    source_format, state, config = _unpack(content)
    if config is None:
        config = recognise_preset(state)
    model = CoarseLoFTR(config)
    ignored = load_weights(model, state)
    if ignored:
        log.info(
            "ignored %d checkpoint tensors of branches a coarse-only model does not compute (%s, ...)",
            len(ignored),
            ignored[0],
        )
    model.eval()
    return LoadedCheckpoint(model, config, source_format, ignored)


def _unpack(content: object) -> tuple[str, dict[str, torch.Tensor], ModelConfig | None]:
    if not isinstance(content, Mapping):
        raise ValueError(f"expected a dict of tensors, got {type(content).__name__}")
    if "model_state_dict" in content and "config" in content:
        try:
            config = ModelConfig.from_dict(content["config"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"the stored model config is invalid: {error}") from None
        return "project", _tensors(content["model_state_dict"]), config
    if "model_state_dict" in content:
        return "coarse_loftr_trt", _tensors(content["model_state_dict"]), None
    if "state_dict" in content:
        state = _tensors(content["state_dict"])
        if state and all(key.startswith(LIGHTNING_PREFIX) for key in state):
            state = {key[len(LIGHTNING_PREFIX) :]: value for key, value in state.items()}
        return "lightning", state, None
    return "state_dict", _tensors(content), None


def _tensors(state: object) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping) or not state:
        raise ValueError("the checkpoint holds no state dict")
    bad = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise ValueError(f"not a state dict: entries that are not tensors: {', '.join(bad[:5])}")
    return dict(state)


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a `CoarseLoFTR(config)` state dict holds (built on
    the meta device: no memory, no initialisation)."""
    with torch.device("meta"):
        model = CoarseLoFTR(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def is_unused_key(key: str) -> bool:
    """Whether `key` belongs to a branch a coarse-only model never computes."""
    return any(pattern.match(key) for pattern in _UNUSED_PATTERNS)


def compare_keys(
    expected: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor]
) -> tuple[KeyMismatch, list[str]]:
    """Differences between a state dict and the expected shapes -> (mismatch, ignored keys)."""
    ignored = sorted(key for key in state if key not in expected and is_unused_key(key))
    unexpected = sorted(key for key in state if key not in expected and not is_unused_key(key))
    missing = sorted(key for key in expected if key not in state)
    mismatched = [
        (key, expected[key], tuple(state[key].shape))
        for key in expected
        if key in state and tuple(state[key].shape) != expected[key]
    ]
    return KeyMismatch(missing, unexpected, mismatched), ignored


def recognise_preset(state: Mapping[str, torch.Tensor]) -> ModelConfig:
    """The preset whose tensors (names and shapes) the state dict holds exactly.

    Raises ValueError naming the differences to the closest preset otherwise.
    """
    best: tuple[int, str, KeyMismatch] | None = None
    for name, config in PRESETS.items():
        mismatch, _ = compare_keys(expected_shapes(config), state)
        if mismatch.ok:
            return config
        if best is None or mismatch.size < best[0]:
            best = (mismatch.size, name, mismatch)
    assert best is not None
    _, name, mismatch = best
    raise ValueError(
        f"the tensors match no known architecture ({', '.join(PRESETS)}); "
        f"closest is {name!r}: {mismatch.describe()}"
    )


def load_weights(model: CoarseLoFTR, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy `state` into `model`, strictly except for known-unused keys -> those keys.

    Raises ValueError naming missing, unexpected and mismatched keys.
    """
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    mismatch, ignored = compare_keys(expected, state)
    if not mismatch.ok:
        raise ValueError(f"checkpoint does not fit model {model.config.name!r}: {mismatch.describe()}")
    model.load_state_dict({key: value for key, value in state.items() if key in expected}, strict=True)
    return ignored
