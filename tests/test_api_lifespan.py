"""The app's lifespan frees what it loaded: the backends of its own matchers close at
shutdown; matchers handed in by the caller stay usable."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from coarse_loftr.api import ServiceSettings, create_app
from coarse_loftr.inference import Matcher
from coarse_loftr.inference.backends import BackendUnavailable

IMAGE = np.full((240, 320), 128, np.uint8)


def test_shutdown_closes_the_backends_the_app_loaded(random_student_onnx):
    app = create_app(ServiceSettings(weights=random_student_onnx, num_threads=1))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        engine = app.state.service.engine
        matchers = {engine.model, engine.live_model}
    for matcher in matchers:
        with pytest.raises(BackendUnavailable, match="closed"):
            matcher.match(IMAGE, IMAGE)


def test_shutdown_leaves_a_callers_matcher_open(random_student_onnx):
    matcher = Matcher(random_student_onnx, backend="onnxruntime", num_threads=1)
    with TestClient(create_app(ServiceSettings(num_threads=1), matcher=matcher)) as client:
        assert client.get("/health").status_code == 200
    assert matcher.backend.session is not None
    matcher.match(IMAGE, IMAGE)  # raises BackendUnavailable had the app closed it
