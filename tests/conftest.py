"""Shared test fixtures and the rules for tests that need something outside the repo.

`@pytest.mark.shared_data` (needs ../shared) and `@pytest.mark.browser` (needs Debian's
Chromium) skip with a reason on a machine without them and fail under CI=true.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixture_data import IN_CI, SHARED

CHROMIUM = "/usr/bin/chromium"

_NEEDS = {
    "shared_data": (SHARED.is_dir, f"needs the team's data beside the checkout ({SHARED})"),
    "browser": (
        lambda: Path(CHROMIUM).is_file() or shutil.which("chromium") is not None,
        "needs Debian's chromium (apt-get install -y chromium)",
    ),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (available, reason) in _NEEDS.items():
        if item.get_closest_marker(marker) and not available():
            if IN_CI:
                pytest.fail(f"{reason}: missing under CI=true", pytrace=False)
            pytest.skip(reason)


@pytest.fixture(scope="session")
def random_student_onnx(tmp_path_factory) -> Path:
    """A random-initialised student exported to ONNX at 320x240 (the shipped live size),
    with its split graphs beside it as released; the service and the runtime tests load
    it with `--weights`."""
    import torch

    from coarse_loftr.inference.config import get_preset
    from coarse_loftr.inference.export import export_onnx, export_split_onnx
    from coarse_loftr.inference.model import CoarseLoFTR

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "student_320x240.onnx"
    model = CoarseLoFTR(get_preset("student"))
    export_onnx(model, path, (320, 240), check_parity=False)
    export_split_onnx(model, path, (320, 240), check_parity=False)
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
