"""Shared test fixtures (several helpers add to this file: keep additions small)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Test data beside the repository (../shared); the product never needs it.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def random_student_onnx(tmp_path_factory) -> Path:
    """A random-initialised student exported to ONNX at 320x240 (what the shipped
    default runs at); the service and the runtime tests load it with `--weights`."""
    import torch

    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.export import export_onnx
    from coarse_loftr.inference.model import CoarseLoFTR

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "student_320x240.onnx"
    export_onnx(CoarseLoFTR(get_preset("student")), path, (320, 240), check_parity=False)
    return path


@pytest.fixture(scope="session")
def random_trt_onnx(tmp_path_factory) -> Path:
    """A random-initialised `coarse_loftr_trt` preset (1/16 grid, no fine head) exported
    at 640x480."""
    import torch

    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.export import export_onnx
    from coarse_loftr.inference.model import CoarseLoFTR

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "coarse_loftr_trt_640x480.onnx"
    export_onnx(CoarseLoFTR(get_preset("coarse_loftr_trt")), path, (640, 480), check_parity=False)
    return path
