"""The app's matcher interface (`api.engine`): the in-process engine names its replica in
`X-Replica` and `/info`, and an engine from `engine_factory` serves the same routes
unchanged (what `serve --ray` relies on; the real Ray Serve run is tests/test_ray.py)."""

from __future__ import annotations

import numpy as np
import pytest
from api_helpers import pair_bytes
from fastapi.testclient import TestClient

from coarse_loftr.api import ServiceSettings, create_app
from coarse_loftr.api.engine import LOCAL_REPLICA, LocalEngine, Matched, RemoteModel
from coarse_loftr.inference import Matcher
from coarse_loftr.inference.errors import ResourceBusy


def post_pair(client: TestClient, path: str = "/match", b: bytes | None = None):
    a, b_default = pair_bytes("0001")
    return client.post(path, files={"a": ("a.jpg", a), "b": ("b.jpg", b or b_default)})


@pytest.fixture(scope="module")
def matcher(random_student_onnx):
    return Matcher(random_student_onnx, num_threads=1)


class ForwardingEngine:
    """An engine elsewhere, as the Ray one is: answers from a local engine under another
    replica name, and raises `ResourceBusy` subclasses on demand."""

    def __init__(self, matcher: Matcher) -> None:
        self.inner = LocalEngine(matcher, matcher, queue_size=2)
        self.model = self.live_model = RemoteModel(matcher.info)
        self.backend_name = "forwarded"
        self.fail: ResourceBusy | None = None

    async def match(self, image0: np.ndarray, image1: np.ndarray, live: bool, **options) -> Matched:
        if self.fail is not None:
            raise self.fail
        matched = await self.inner.match(image0, image1, live=live, **options)
        return Matched(matched.result, matched.inference_ms, "replica-b")

    async def replicas(self) -> list[str]:
        return ["replica-a", "replica-b"]

    async def close(self) -> None:
        await self.inner.close()


def test_local_engine_names_its_replica(matcher):
    with TestClient(create_app(ServiceSettings(), matcher=matcher)) as client:
        response = post_pair(client)
        assert response.status_code == 200 and response.headers["x-replica"] == LOCAL_REPLICA
        assert post_pair(client, "/register").headers["x-replica"] == LOCAL_REPLICA
        assert client.get("/info").json()["replicas"] == [LOCAL_REPLICA]
        refused = post_pair(client, b=b"not an image")
        assert refused.status_code == 415 and "x-replica" not in refused.headers
        assert "x-replica" not in client.get("/health").headers


def test_an_engine_from_the_factory_serves_the_same_routes(matcher):
    engine = ForwardingEngine(matcher)

    async def factory():
        return engine

    with TestClient(create_app(ServiceSettings(), engine_factory=factory)) as client:
        response = post_pair(client)
        assert response.status_code == 200 and response.headers["x-replica"] == "replica-b"
        assert response.json()["num_matches"] == len(response.json()["confidence"])
        info = client.get("/info").json()
        assert info["replicas"] == ["replica-a", "replica-b"] and info["backend"] == "forwarded"
        assert info["input_size"] == {"width": 320, "height": 240}

        class ReplicaGone(ResourceBusy):
            code = "replica_lost"

        engine.fail = ReplicaGone("the replica matching this request stopped; retry shortly")
        lost = post_pair(client)
        assert lost.status_code == 503 and lost.json()["error"] == "replica_lost"
        assert "stopped" in lost.json()["detail"] and int(lost.headers["retry-after"]) >= 1
        engine.fail = ResourceBusy("queue full")
        busy = post_pair(client)
        assert busy.status_code == 503 and busy.json()["error"] == "busy"


def test_the_service_runtime_threads_do_not_spin_for_work():
    """The service decodes and draws on the cores ONNX Runtime computes on, so every
    session it opens (both roles, with their split graphs) leaves them idle between steps;
    a plain `Matcher` keeps ONNX Runtime's default (spinning)."""
    from coarse_loftr.api.app import load_matchers

    key = "session.intra_op.allow_spinning"
    uploads, live = load_matchers(ServiceSettings(num_threads=1))
    sessions = [
        session
        for matcher in (uploads, live)
        for session in (
            matcher.backend.session,
            matcher.backend.reference_session,
            matcher.backend.frame_session,
        )
        if session is not None
    ]
    assert len(sessions) == 6  # the shipped default and live sizes each come with split graphs
    assert all(s.get_session_options().get_session_config_entry(key) == "0" for s in sessions)
    plain = Matcher(num_threads=1).backend.session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):
        plain.get_session_config_entry(key)
