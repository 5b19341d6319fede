"""ONNX Runtime backend: CPU by default, CUDA when that provider is installed and wanted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..graph import IMAGE0_FEATURE_NAMES, INPUT_NAMES, OUTPUT_NAMES
from ._inputs import check_image, check_pair
from .base import Backend, BackendOutput, BackendUnavailable, Image0Encoding, ModelInfo


class OnnxRuntimeBackend(Backend):
    """Runs an exported graph (see `inference.export`) with ONNX Runtime.

    onnx_path: model written by `coarse-loftr export-onnx` (its metadata gives the
    input size); num_threads: intra-op threads (None: ONNX Runtime's default, one per
    core); use_cuda: None picks the CUDA provider when it is available, False forces CPU;
    split: (reference, frame) graphs of the same model (`export_split_onnx`), which make
    `encode_image0` and `run_encoded` work.
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        num_threads: int | None = None,
        use_cuda: bool | None = None,
        split: tuple[Path, Path] | None = None,
        spin_wait: bool = True,
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
        if not spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if use_cuda is not False and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif use_cuda:
            raise BackendUnavailable(
                "the CUDA provider of onnxruntime is not available here "
                f"(providers: {', '.join(available)}); install onnxruntime-gpu"
            )

        def open_session(graph_path: Path) -> tuple[ort.InferenceSession, ModelInfo]:
            try:
                session = ort.InferenceSession(str(graph_path), options, providers=providers)
            except Exception as error:  # onnxruntime raises its own, unexported exception types
                raise ValueError(f"{graph_path}: ONNX Runtime cannot load it: {error}") from None
            try:
                return session, ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
            except ValueError as error:
                raise ValueError(
                    f"{graph_path}: {error} (export it with `coarse-loftr export-onnx`)"
                ) from None

        self.session, info = open_session(path)
        self._check_graph(path, info)
        super().__init__(info)
        self.path = path
        self.num_threads = num_threads
        self.providers = self.session.get_providers()
        self.reference_session = self.frame_session = None
        if split is not None:
            (self.reference_session, reference_info), (self.frame_session, frame_info) = (
                open_session(Path(graph)) for graph in split
            )
            if reference_info != info or frame_info != info:
                raise ValueError(f"{split[0]} and {split[1]} are not split from the model in {path}")
            self._image0_names = _check_split(split, info, self.reference_session, self.frame_session)
            self.reuses_image0 = True

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
        # Dropping the sessions frees their arenas; a later run gets a clear error.
        self.session = self.reference_session = self.frame_session = None

    def run(self, image0: np.ndarray, image1: np.ndarray) -> BackendOutput:
        image0, image1 = check_pair(self.info, image0, image1)
        if self.session is None:
            raise BackendUnavailable("this ONNX Runtime backend was closed")
        conf_max, match_index, offset1 = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAMES[0]: image0, INPUT_NAMES[1]: image1}
        )
        return _output(conf_max, match_index, offset1)

    def encode_image0(self, image0: np.ndarray) -> Image0Encoding:
        if not self.reuses_image0:
            return super().encode_image0(image0)
        if self.reference_session is None:
            raise BackendUnavailable("this ONNX Runtime backend was closed")
        image0 = check_image(self.info, INPUT_NAMES[0], image0)
        arrays = self.reference_session.run(self._image0_names, {INPUT_NAMES[0]: image0})
        return dict(zip(self._image0_names, arrays))

    def run_encoded(self, image0: Image0Encoding, image1: np.ndarray) -> BackendOutput:
        if not self.reuses_image0:
            return super().run_encoded(image0, image1)
        if self.frame_session is None:
            raise BackendUnavailable("this ONNX Runtime backend was closed")
        image1 = check_image(self.info, INPUT_NAMES[1], image1)
        feeds = {INPUT_NAMES[1]: image1, **{name: image0[name] for name in self._image0_names}}
        return _output(*self.frame_session.run(list(OUTPUT_NAMES), feeds))

    def describe(self) -> str:
        threads = self.num_threads or os.cpu_count()
        provider = self.providers[0]
        return (
            f"onnxruntime ({provider}, {threads} threads)"
            if provider == "CPUExecutionProvider"
            else f"onnxruntime ({provider})"
        )


def _output(conf_max: np.ndarray, match_index: np.ndarray, offset1: np.ndarray) -> BackendOutput:
    return BackendOutput(conf_max[0], match_index[0].astype(np.int64, copy=False), offset1[0])


def _check_split(split: tuple[Path, Path], info: ModelInfo, reference, frame) -> list[str]:
    """The names of image0's features, after checking that the frame graph takes exactly
    what the reference graph gives (and image1) and returns the matching's outputs."""
    width, height = info.input_size
    image_shape = [1, 1, height, width]
    names = [arg.name for arg in reference.get_outputs()]
    frame_inputs = {arg.name: arg.shape for arg in frame.get_inputs()}
    reference_inputs = {arg.name: arg.shape for arg in reference.get_inputs()}
    if (
        reference_inputs != {INPUT_NAMES[0]: image_shape}
        or names != list(IMAGE0_FEATURE_NAMES[: len(names)])
        or frame_inputs.get(INPUT_NAMES[1]) != image_shape
        or set(frame_inputs) != {INPUT_NAMES[1], *names}
        or [arg.name for arg in frame.get_outputs()] != list(OUTPUT_NAMES)
    ):
        raise ValueError(
            f"{split[0]} and {split[1]} are not a reference graph and its frame graph for "
            f"{width}x{height} (export them with `coarse-loftr export-onnx --split`)"
        )
    return names


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
