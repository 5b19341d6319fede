"""The one interface every runtime implements.

A backend runs the exported matching graph (`inference.model.CoarseLoFTR.predict`) on
one pair of pre-processed images and returns, for every coarse cell of image0, its
mutual-nearest-neighbour match in image1. Everything before (decoding, resizing) and
after (thresholds, coordinates, geometry) is shared code that never looks inside a
backend.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..errors import CoarseLoftrError


class BackendUnavailable(CoarseLoftrError):
    """The requested runtime cannot run here (library or device missing); the message says why."""


@dataclass(frozen=True)
class BackendOutput:
    """Per-cell output of the matching graph for one pair (batch dimension removed).

    conf_max: (N0,) float32, dual-softmax confidence of each image0 cell's best image1
        cell, 0 where that match is not mutual.
    match_index: (N0,) int64, row-major index of that image1 cell on the coarse grid.
    offset1: (N0, 2) float32, sub-cell position (x, y) of the match in model-input pixels,
        relative to the centre of the matched image1 cell.
    """

    conf_max: np.ndarray
    match_index: np.ndarray
    offset1: np.ndarray


@dataclass(frozen=True)
class ModelInfo:
    """What a backend knows of the graph it runs (stored in the ONNX metadata).

    input_size: (width, height) of the model input in pixels; coarse_stride: input
    pixels per coarse cell; name: model name (e.g. "student"); config: the
    `ModelConfig` as a dict, when known.
    """

    input_size: tuple[int, int]
    coarse_stride: int
    name: str
    config: dict | None = None

    @property
    def grid_size(self) -> tuple[int, int]:
        """(columns, rows) of the coarse grid."""
        width, height = self.input_size
        return width // self.coarse_stride, height // self.coarse_stride

    def to_metadata(self) -> dict[str, str]:
        meta = {
            "input_width": str(self.input_size[0]),
            "input_height": str(self.input_size[1]),
            "coarse_stride": str(self.coarse_stride),
            "model_name": self.name,
        }
        if self.config is not None:
            meta["model_config"] = json.dumps(self.config)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelInfo:
        try:
            return cls(
                input_size=(int(meta["input_width"]), int(meta["input_height"])),
                coarse_stride=int(meta["coarse_stride"]),
                name=meta.get("model_name", "unknown"),
                config=json.loads(meta["model_config"]) if "model_config" in meta else None,
            )
        except (KeyError, ValueError) as error:
            raise ValueError(f"model metadata is incomplete or invalid: {error}") from None


#: image0's half of the matching (see `inference.graph`): (1, N0, C) float32 arrays by
#: the names in `IMAGE0_FEATURE_NAMES`, opaque to everything but the backend that made it.
Image0Encoding = dict[str, np.ndarray]


class Backend(ABC):
    """A loaded model on one runtime. Not thread-safe unless a subclass says so:
    callers serialise `run` (the service runs it on one worker thread)."""

    #: short runtime name: "onnxruntime", "tensorrt" or "torch"
    name: str

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    @abstractmethod
    def run(self, image0: np.ndarray, image1: np.ndarray) -> BackendOutput:
        """image0, image1: (1, 1, H, W) float32 grayscale in [0, 1], H x W = the model
        input size (`info.input_size` is (W, H))."""

    #: Whether `encode_image0` and `run_encoded` work: the runtime has the split graphs.
    reuses_image0: bool = False

    def encode_image0(self, image0: np.ndarray) -> Image0Encoding:
        """image0 (1, 1, H, W) float32 -> its half of the matching, for `run_encoded`."""
        raise BackendUnavailable(f"the {self.name} backend has no split graphs to reuse image0 with")

    def run_encoded(self, image0: Image0Encoding, image1: np.ndarray) -> BackendOutput:
        """`run` with image0's half from `encode_image0`: the same output, at the cost of
        image1's half and what the two share."""
        raise BackendUnavailable(f"the {self.name} backend has no split graphs to reuse image0 with")

    def describe(self) -> str:
        """One line for logs and /info, e.g. 'onnxruntime (CPUExecutionProvider, 2 threads)'."""
        return self.name

    def close(self) -> None:  # noqa: B027 (a no-op unless a runtime holds something)
        """Free what the runtime holds (device memory, sessions); `run` fails afterwards.
        Idempotent."""
