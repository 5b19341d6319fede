"""Fuzz the running service from its own OpenAPI schema (schemathesis 4): every answer
must be documented, match its declared schema, and never be a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from coarse_loftr.api import loadtest


@pytest.fixture(scope="module")
def api_schema(random_student_onnx):
    url = f"http://127.0.0.1:{loadtest.free_port()}"
    process = loadtest.start_server(
        str(random_student_onnx), int(url.rsplit(":", 1)[1]), threads=1, queue_size=8
    )
    try:
        loadtest.wait_healthy(url, process)
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
def test_api_conforms_to_its_schema(api_schema):
    # Hypothesis drives each operation directly (not schemathesis' pytest plugin, whose
    # fixture parametrization breaks on pytest 9.2), so one test covers every route.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/match", "/register", "/health", "/info"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case):
            # Schema-valid is not image-valid: OpenAPI cannot say "decodable PNG or JPEG",
            # so the random bytes it sends as `a` / `b` are rightly refused (415 / 422 /
            # 413). Every other check stays on, negative data (bad query values) included.
            case.call_and_validate(timeout=30, excluded_checks=[schemathesis.checks.positive_data_acceptance])

        conforms()
