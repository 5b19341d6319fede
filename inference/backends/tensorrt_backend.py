"""TensorRT 10 backend: an engine built from the exported ONNX graph, cached on disk.

Uses only the TensorRT 10 named-tensor API (`get_tensor_name`, `get_tensor_shape`,
`set_tensor_address`, `execute_async_v3`). CUDA memory is handled with pycuda through an
explicit context made on the device and pushed / popped around every call, so the
backend works from any thread (the service runs inference on a worker thread); nothing
relies on `pycuda.autoinit`, which binds a context to the importing thread only.

`tensorrt` and `pycuda` are imported inside functions: on a machine without them this
module imports fine and every entry point raises `BackendUnavailable` saying why.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from ..graph import INPUT_NAMES, OUTPUT_NAMES, needs_fp32
from ._inputs import check_pair
from .base import Backend, BackendOutput, BackendUnavailable

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024
#: Engines are FP16 unless asked otherwise (build-engine and the backend agree, so an
#: engine built with the defaults is the one the backend looks up in the cache).
DEFAULT_FP16 = True


def tensorrt_status(device_id: int = 0) -> str | None:
    """None when TensorRT can run here, else the reason it cannot (one sentence)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as error:
        return f"TensorRT is not installed (install the `gpu` extra: tensorrt, pycuda): {error}"
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        return f"pycuda is not installed or finds no CUDA driver: {error}"
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as error:  # pycuda raises cuda.Error subclasses or RuntimeError
        return f"CUDA cannot be initialised (no NVIDIA driver or GPU?): {error}"
    if count <= device_id:
        return f"no NVIDIA GPU with index {device_id} (found {count})"
    return None


def _require_tensorrt(device_id: int = 0):
    reason = tensorrt_status(device_id)
    if reason is not None:
        raise BackendUnavailable(f"tensorrt backend unavailable: {reason}")
    import pycuda.driver as cuda
    import tensorrt as trt

    return trt, cuda


def engine_cache_key(onnx_bytes: bytes, gpu_name: str, tensorrt_version: str, fp16: bool) -> str:
    """sha256 over the ONNX bytes, the GPU model and the TensorRT version (and the
    precision): an engine is only valid for exactly that combination."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(onnx_bytes).digest())
    for part in (gpu_name, tensorrt_version, "fp16" if fp16 else "fp32"):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def engine_cache_dir() -> Path:
    """~/.cache/coarse-loftr/engines (or under $COARSE_LOFTR_CACHE)."""
    from ..weights import cache_dir

    return cache_dir() / "engines"


def engine_cache_path(onnx_path: str | Path, gpu_name: str, tensorrt_version: str, fp16: bool) -> Path:
    key = engine_cache_key(Path(onnx_path).read_bytes(), gpu_name, tensorrt_version, fp16)
    return engine_cache_dir() / f"{Path(onnx_path).stem}-{key[:16]}.engine"


class _DeviceContext:
    """A pycuda context on one device, entered around every use (any thread)."""

    def __init__(self, cuda, device_id: int) -> None:
        self._cuda = cuda
        self.device = cuda.Device(device_id)
        self.context = self.device.make_context()  # made current on this thread: pop it
        self.context.pop()

    def __enter__(self):
        self.context.push()
        return self

    def __exit__(self, *exc) -> None:
        self._cuda.Context.pop()

    def release(self) -> None:
        self.context.detach()


def build_engine(
    onnx_path: str | Path,
    fp16: bool = DEFAULT_FP16,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    out: str | Path | None = None,
    device_id: int = 0,
    rebuild: bool = False,
) -> Path:
    """Build a serialized TensorRT engine from an ONNX file -> its path.

    out: where to write it; None uses the engine cache, keyed by the ONNX bytes, GPU
    and TensorRT version, and returns a cached engine without rebuilding (unless
    `rebuild`). Raises BackendUnavailable without TensorRT / a GPU, ValueError when
    the parser rejects the graph.
    """
    trt, cuda = _require_tensorrt(device_id)
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    device = _DeviceContext(cuda, device_id)
    try:
        gpu_name = device.device.name()
        target = (
            Path(out) if out is not None else engine_cache_path(onnx_path, gpu_name, trt.__version__, fp16)
        )
        if out is None and target.is_file() and not rebuild:
            log.info("using cached TensorRT engine %s", target)
            return target
        with device:
            serialized = _build(trt, onnx_path.read_bytes(), fp16, workspace_mb)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".partial")
        temporary.write_bytes(serialized)
        temporary.replace(target)  # no half-written engine in the cache if interrupted
        log.info(
            "built TensorRT %s engine for %s on %s: %s", trt.__version__, onnx_path.name, gpu_name, target
        )
        return target
    finally:
        device.release()


def _build(trt, onnx_bytes: bytes, fp16: bool, workspace_mb: int) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        _keep_matching_in_fp32(trt, network, config)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError("TensorRT failed to build the engine (see its log above)")
    return bytes(serialized)


def _keep_matching_in_fp32(trt, network, config) -> None:
    """FP16 everywhere except the coarse matching (`inference.graph.FP32_SCOPES`).

    TensorRT 10's weakly typed API: the FP16 flag lets the builder pick FP16 kernels,
    and OBEY_PRECISION_CONSTRAINTS makes it honour each listed layer's FP32 precision and
    output types. TensorRT 11 removes both (networks are strongly typed): there the
    precision comes from the ONNX graph itself, see the README.
    """
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    layers = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
    floats = (trt.float32, trt.float16)
    kept = 0
    for name in needs_fp32(layers):
        layer = layers[name]
        outputs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
        if not outputs:
            continue  # integer results (TopK indices, shapes) have no precision to keep
        layer.precision = trt.float32
        for j in outputs:
            layer.set_output_type(j, trt.float32)
        kept += 1
    if kept == 0:
        raise ValueError(
            "no coarse-matching layers found to keep in FP32 (expected names with "
            "/mutual_nearest/): re-export the ONNX model with this version"
        )
    log.info("FP16 engine: %d matching layers kept in FP32", kept)


class TensorRtBackend(Backend):
    """Runs a TensorRT engine of an exported graph on one GPU.

    onnx_path: the exported model (its metadata gives the input size; the engine is
    built from it on first use and cached); engine_path: a prebuilt engine instead.
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | Path,
        engine_path: str | Path | None = None,
        fp16: bool = DEFAULT_FP16,
        device_id: int = 0,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
    ) -> None:
        trt, cuda = _require_tensorrt(device_id)
        from .onnxruntime_backend import read_model_info

        info = read_model_info(onnx_path)
        super().__init__(info)
        self._cuda = cuda
        if engine_path is None:
            engine_path = build_engine(onnx_path, fp16=fp16, workspace_mb=workspace_mb, device_id=device_id)
        self.engine_path = Path(engine_path)
        self._device: _DeviceContext | None = _DeviceContext(cuda, device_id)
        self.gpu_name = self._device.device.name()
        with self._device:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                raise ValueError(
                    f"{self.engine_path}: TensorRT cannot deserialize this engine "
                    f"(built by another TensorRT version or GPU?)"
                )
            self.context = self.engine.create_execution_context()
            self.stream = cuda.Stream()
            self._host: dict[str, np.ndarray] = {}
            self._device_mem: dict = {}
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            missing = [n for n in INPUT_NAMES + OUTPUT_NAMES if n not in names]
            if missing:
                raise ValueError(f"{self.engine_path}: engine lacks tensors {', '.join(missing)}")
            for name in names:
                shape = tuple(self.engine.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                # Page-locked host buffers: asynchronous copies need them, and they are faster.
                host = cuda.pagelocked_empty(shape, dtype)
                memory = cuda.mem_alloc(host.nbytes)
                self.context.set_tensor_address(name, int(memory))
                self._host[name], self._device_mem[name] = host, memory
        width, height = info.input_size
        if tuple(self._host[INPUT_NAMES[0]].shape) != (1, 1, height, width):
            raise ValueError(
                f"{self.engine_path}: engine input shape {self._host[INPUT_NAMES[0]].shape} "
                f"does not match the model's {width}x{height}"
            )

    def run(self, image0: np.ndarray, image1: np.ndarray) -> BackendOutput:
        image0, image1 = check_pair(self.info, image0, image1)
        cuda = self._cuda
        if self._device is None:
            raise BackendUnavailable("this TensorRT backend was closed")
        with self._device:
            for name, image in zip(INPUT_NAMES, (image0, image1)):
                np.copyto(self._host[name], image)
                cuda.memcpy_htod_async(self._device_mem[name], self._host[name], self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise RuntimeError("TensorRT execution failed")
            for name in OUTPUT_NAMES:
                cuda.memcpy_dtoh_async(self._host[name], self._device_mem[name], self.stream)
            self.stream.synchronize()
        conf_max, match_index, offset1 = (self._host[name][0].copy() for name in OUTPUT_NAMES)
        return BackendOutput(
            conf_max.astype(np.float32, copy=False),
            match_index.astype(np.int64),
            offset1.astype(np.float32, copy=False),
        )

    def close(self) -> None:
        """Free the GPU buffers and the context (also done at interpreter exit by pycuda)."""
        device = getattr(self, "_device", None)
        if device is None:
            return
        with device:
            for memory in self._device_mem.values():
                memory.free()
            self._device_mem.clear()
            self.context = self.engine = None
        device.release()
        self._device = None

    def describe(self) -> str:
        return f"tensorrt ({self.gpu_name}, {self.engine_path.name})"
