"""ONNX Runtime backend: CPU by default, CUDA when that provider is installed and wanted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..graph import INPUT_NAMES, OUTPUT_NAMES
from ._inputs import check_pair
from .base import Backend, BackendOutput, BackendUnavailable, ModelInfo


class OnnxRuntimeBackend(Backend):
    """Runs an exported graph (see `inference.export`) with ONNX Runtime.

    onnx_path: model written by `coarse-loftr export-onnx` (its metadata gives the
    input size); num_threads: intra-op threads (None: ONNX Runtime's default, one per
    core); use_cuda: None picks the CUDA provider when it is available, False forces CPU.
    """

    name = "onnxruntime"

    def __init__(
        self, onnx_path: str | Path, num_threads: int | None = None, use_cuda: bool | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise BackendUnavailable(f"onnxruntime is not installed ({error})") from None
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        # One graph, one request at a time: no use for parallel branches.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if use_cuda is not False and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif use_cuda:
            raise BackendUnavailable(
                "the CUDA provider of onnxruntime is not available here "
                f"(providers: {', '.join(available)}); install onnxruntime-gpu"
            )
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own, unexported exception types
            raise ValueError(f"{path}: ONNX Runtime cannot load it: {error}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            info = ModelInfo.from_metadata(meta)
        except ValueError as error:
            raise ValueError(f"{path}: {error} (export it with `coarse-loftr export-onnx`)") from None
        self._check_graph(path, info)
        super().__init__(info)
        self.path = path
        self.num_threads = num_threads
        self.providers = self.session.get_providers()

    def _check_graph(self, path: Path, info: ModelInfo) -> None:
        inputs = {arg.name: arg.shape for arg in self.session.get_inputs()}
        outputs = [arg.name for arg in self.session.get_outputs()]
        width, height = info.input_size
        for name in INPUT_NAMES:
            if inputs.get(name) != [1, 1, height, width]:
                raise ValueError(
                    f"{path}: input {name!r} has shape {inputs.get(name)}, but the "
                    f"metadata says {width}x{height}"
                )
        missing = [name for name in OUTPUT_NAMES if name not in outputs]
        if missing:
            raise ValueError(f"{path}: not a matching graph, outputs {', '.join(missing)} are missing")

    def close(self) -> None:
        # Dropping the session frees its arena; a later run gets a clear error.
        self.session = None

    def run(self, image0: np.ndarray, image1: np.ndarray) -> BackendOutput:
        image0, image1 = check_pair(self.info, image0, image1)
        if self.session is None:
            raise BackendUnavailable("this ONNX Runtime backend was closed")
        conf_max, match_index, offset1 = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAMES[0]: image0, INPUT_NAMES[1]: image1}
        )
        return BackendOutput(conf_max[0], match_index[0].astype(np.int64, copy=False), offset1[0])

    def describe(self) -> str:
        threads = self.num_threads or os.cpu_count()
        provider = self.providers[0]
        return (
            f"onnxruntime ({provider}, {threads} threads)"
            if provider == "CPUExecutionProvider"
            else f"onnxruntime ({provider})"
        )


def read_model_info(onnx_path: str | Path) -> ModelInfo:
    """The `ModelInfo` stored in an exported model's metadata (other backends use it to
    learn the input size of the graph they stand in for)."""
    import onnxruntime as ort

    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own, unexported exception types
        raise ValueError(f"{path}: ONNX Runtime cannot load it: {error}") from None
    try:
        return ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
    except ValueError as error:
        raise ValueError(f"{path}: {error} (export it with `coarse-loftr export-onnx`)") from None
