"""Backends: ONNX Runtime and PyTorch agree; auto falls back to ONNX Runtime here;
TensorRT (not runnable on this machine: no GPU, no tensorrt) fails with clear messages
and its engine cache key is tested on its own."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from coarse_loftr.commands import build_engine as build_engine_command
from coarse_loftr.commands import main
from coarse_loftr.inference.backends import BackendUnavailable, available_backends, create_backend
from coarse_loftr.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from coarse_loftr.inference.backends.tensorrt_backend import (
    DEFAULT_FP16,
    TensorRtBackend,
    build_engine,
    engine_cache_key,
    engine_cache_path,
    tensorrt_status,
)
from coarse_loftr.inference.benchmark import synthetic_pair
from coarse_loftr.inference.config import get_preset
from coarse_loftr.inference.export import export_onnx
from coarse_loftr.inference.model import CoarseLoFTR
from coarse_loftr.inference.preprocess import letterbox, to_gray_float

no_tensorrt = pytest.mark.skipif(tensorrt_status() is None, reason="TensorRT can run here")


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = CoarseLoFTR(get_preset("student"))
    folder = tmp_path_factory.mktemp("backends")
    checkpoint = folder / "student.pt"
    torch.save({"config": model.config.to_dict(), "model_state_dict": model.state_dict()}, checkpoint)
    onnx_path = folder / "student_320x240.onnx"
    export_onnx(model, onnx_path, (320, 240), check_parity=False)
    return onnx_path, checkpoint


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    images = synthetic_pair(0)
    return tuple(letterbox(to_gray_float(image), (320, 240))[0] for image in (images.image0, images.image1))


def test_onnxruntime_and_torch_agree(student, pair):
    onnx_path, checkpoint = student
    ort_backend = create_backend("onnxruntime", onnx_path=onnx_path, num_threads=1)
    torch_backend = create_backend("torch", onnx_path=onnx_path, checkpoint_path=checkpoint, num_threads=1)
    assert ort_backend.info.input_size == torch_backend.info.input_size == (320, 240)
    a, b = ort_backend.run(*pair), torch_backend.run(*pair)
    assert a.conf_max.shape == (1200,) and a.match_index.dtype == np.int64 and a.offset1.shape == (1200, 2)
    np.testing.assert_allclose(a.conf_max, b.conf_max, atol=1e-4)
    confident = b.conf_max > 0.01
    assert confident.any()
    np.testing.assert_array_equal(a.match_index[confident], b.match_index[confident])
    np.testing.assert_allclose(a.offset1[confident], b.offset1[confident], atol=1e-2)


def test_auto_picks_onnxruntime_here_and_says_why(student, caplog):
    if tensorrt_status() is None:
        pytest.skip("TensorRT can run here")
    with caplog.at_level(logging.INFO, logger="coarse_loftr.inference.backends"):
        backend = create_backend("auto", onnx_path=student[0], num_threads=1)
    assert backend.name == "onnxruntime"
    assert "CPUExecutionProvider, 1 threads" in backend.describe()
    assert any("TensorRT" in record.getMessage() for record in caplog.records)
    assert available_backends() == ["onnxruntime", "torch"]


@no_tensorrt
def test_tensorrt_request_is_refused_with_a_reason(student):
    with pytest.raises(BackendUnavailable, match=r"tensorrt backend unavailable: .*(TensorRT|CUDA|GPU)"):
        create_backend("tensorrt", onnx_path=student[0])
    with pytest.raises(BackendUnavailable, match="tensorrt backend unavailable"):
        build_engine(student[0])


def test_engine_cache_key_follows_onnx_gpu_version_precision(student):
    data = student[0].read_bytes()
    key = engine_cache_key(data, "NVIDIA H100", "10.3.0", True)
    assert key == engine_cache_key(data, "NVIDIA H100", "10.3.0", True)
    changed = data[:-1] + bytes([data[-1] ^ 1])
    others = {
        engine_cache_key(changed, "NVIDIA H100", "10.3.0", True),
        engine_cache_key(data, "NVIDIA A100", "10.3.0", True),
        engine_cache_key(data, "NVIDIA H100", "10.4.0", True),
        engine_cache_key(data, "NVIDIA H100", "10.3.0", False),
    }
    assert key not in others and len(others) == 4


def test_build_engine_defaults_to_the_engine_the_backend_looks_up(student, monkeypatch, capsys):
    """`coarse-loftr build-engine M.onnx` with no options builds the precision that
    `TensorRtBackend(M.onnx)` (what `create_backend("tensorrt")` makes) asks for, so the
    backend finds that engine in the cache. TensorRT cannot run here: the command's call
    into the builder is recorded instead of made."""
    calls = []

    def record(onnx_path, **options):
        calls.append(options)
        return onnx_path  # the command prints the file's size: any existing file will do

    monkeypatch.setattr(build_engine_command, "build_engine", record)
    assert main(["build-engine", str(student[0])]) == 0
    assert "ready in" in capsys.readouterr().out
    (options,) = calls
    backend_fp16 = inspect.signature(TensorRtBackend).parameters["fp16"].default
    assert options["fp16"] == backend_fp16 == DEFAULT_FP16
    assert inspect.signature(build_engine).parameters["fp16"].default == backend_fp16
    gpu, version = "NVIDIA H100", "10.3.0"
    assert engine_cache_path(student[0], gpu, version, options["fp16"]) == engine_cache_path(
        student[0], gpu, version, backend_fp16
    )


def test_bad_inputs_get_clear_errors(student, pair):
    backend = OnnxRuntimeBackend(student[0], num_threads=1)
    with pytest.raises(ValueError, match=r"image0 has shape \(1, 1, 480, 640\).*\(1, 1, 240, 320\)"):
        backend.run(np.zeros((1, 1, 480, 640), np.float32), pair[1])
    with pytest.raises(ValueError, match="image1 has dtype uint8"):
        backend.run(pair[0], (pair[1] * 255).astype(np.uint8))
    # float64 is converted, not refused.
    assert backend.run(pair[0].astype(np.float64), pair[1]).conf_max.dtype == np.float32
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("openvino", onnx_path=student[0])
    with pytest.raises(BackendUnavailable, match="checkpoint"):
        create_backend("torch", onnx_path=student[0])
    with pytest.raises(FileNotFoundError):
        create_backend("onnxruntime", onnx_path=student[0].parent / "missing.onnx")


def test_onnx_without_metadata_is_refused(student, tmp_path):
    model = onnx.load(str(student[0]))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ValueError, match="export-onnx"):
        OnnxRuntimeBackend(bare)


def test_runtime_modules_do_not_import_torch():
    modules = ["backends", "backends.onnxruntime_backend", "backends.tensorrt_backend", "benchmark", "flops"]
    code = (
        f"import sys, {', '.join(f'coarse_loftr.inference.{name}' for name in modules)}; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    # The installed package, not the checkout's folders by their bare names.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent / "data")


def test_closed_matcher_frees_its_backend_and_says_so(student):
    from coarse_loftr.inference import Matcher
    from coarse_loftr.inference.backends.base import BackendUnavailable

    image = np.full((240, 320), 128, np.uint8)
    with Matcher(student[0], backend="onnxruntime", num_threads=1) as matcher:
        matcher.match(image, image)
    assert matcher.backend.session is None
    with pytest.raises(BackendUnavailable, match="closed"):
        matcher.match(image, image)
    matcher.close()  # idempotent
