"""Runtimes behind one interface (`Backend`): ONNX Runtime (default, CPU or CUDA),
TensorRT (NVIDIA GPUs) and PyTorch (reference). Each is imported only when chosen."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from .base import Backend, BackendOutput, BackendUnavailable, Image0Encoding, ModelInfo

log = logging.getLogger(__name__)

KINDS = ("auto", "onnxruntime", "tensorrt", "torch")

__all__ = [
    "KINDS",
    "Backend",
    "BackendOutput",
    "BackendUnavailable",
    "Image0Encoding",
    "ModelInfo",
    "available_backends",
    "create_backend",
]


def available_backends() -> list[str]:
    """The runtimes that can run here, fastest first (TensorRT needs a GPU; torch the
    `train` extra)."""
    from .tensorrt_backend import tensorrt_status

    kinds = []
    if tensorrt_status() is None:
        kinds.append("tensorrt")
    if importlib.util.find_spec("onnxruntime") is not None:
        kinds.append("onnxruntime")
    if importlib.util.find_spec("torch") is not None:
        kinds.append("torch")
    return kinds


def create_backend(
    kind: str = "auto",
    *,
    onnx_path: str | Path | None,
    checkpoint_path: str | Path | None = None,
    num_threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    split: tuple[Path, Path] | None = None,
    spin_wait: bool = True,
) -> Backend:
    """Load a model on a runtime.

    kind: "auto" (TensorRT when it can run here, else ONNX Runtime; the reason is
    logged), "onnxruntime", "tensorrt" or "torch". onnx_path: the exported model;
    checkpoint_path: its PyTorch checkpoint (torch only); num_threads: CPU threads;
    input_size: (width, height) for torch when no ONNX file gives it; split: the model's
    (reference, frame) graphs, which let ONNX Runtime reuse an image0 (torch needs none;
    TensorRT runs the whole graph for every pair); spin_wait: ONNX Runtime's idle threads
    spin for work (the quickest for a caller alone on the CPU; off where other threads need
    the cores between and during runs, as in the service).
    Raises BackendUnavailable when the requested runtime cannot run here.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "torch":
        return _torch_backend(onnx_path, checkpoint_path, num_threads, input_size)
    if onnx_path is None:
        raise ValueError(f"the {kind} backend needs an ONNX model (onnx_path)")
    if kind in ("auto", "tensorrt"):
        from .tensorrt_backend import TensorRtBackend, tensorrt_status

        reason = tensorrt_status()
        if reason is None:
            try:
                return TensorRtBackend(onnx_path)
            except BackendUnavailable as error:
                if kind == "tensorrt":
                    raise
                reason = str(error)
        if kind == "tensorrt":
            raise BackendUnavailable(f"tensorrt backend unavailable: {reason}")
        log.info("backend auto: using onnxruntime, TensorRT cannot run here: %s", reason)
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(onnx_path, num_threads=num_threads, split=split, spin_wait=spin_wait)


def _torch_backend(onnx_path, checkpoint_path, num_threads, input_size) -> Backend:
    if checkpoint_path is None:
        raise BackendUnavailable(
            "the torch backend needs the model's PyTorch checkpoint (none is known for this model)"
        )
    if input_size is None:
        if onnx_path is None:
            raise ValueError("the torch backend needs an input size (or the ONNX model to read it from)")
        from .onnxruntime_backend import read_model_info

        input_size = read_model_info(onnx_path).input_size
    from .torch_backend import TorchBackend

    return TorchBackend(checkpoint_path, input_size, num_threads=num_threads)
