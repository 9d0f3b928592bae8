"""Schemathesis against /openapi.json of the real server: generated valid and invalid requests for every
operation must never get a 5xx, and every answer must be documented (status, content type, body schema).

The fast variant fuzzes the keyed, caption-only server: /v1/generate is validated (422) and then answers
its documented 501, which keeps it cheap - each new image size costs the tiny SDXL seconds of CPU kernel
set-up. The `slow` variant runs many examples against the server that really generates (`make test-slow`).
"""

from __future__ import annotations

import pytest
from servefixtures import API_KEY

from vlgen.serving.process import ServerProcess

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


def no_server_error(ctx, response, case):
    """not_a_server_error, except the documented 501 of /v1/generate on a server without text-to-image."""
    if response.status_code == 501 and case.operation.path == "/v1/generate":
        assert response.json()["error"]["type"] == "not_enabled"
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz(server: ServerProcess, max_examples: int, headers: dict[str, str] | None = None) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    ran = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=max_examples,
                deadline=None,
                derandomize=True,  # the same examples every run: a fast test must not be flaky
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case) -> None:
                case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS, timeout=120)

            try:
                check()
            except Unsatisfiable:  # no invalid input exists for an operation without inputs (GET /health)
                assert mode == schemathesis.GenerationMode.NEGATIVE
                continue
            ran.append(f"{operation.label} {mode.value}")
    assert server.alive()
    return ran


def test_openapi_fuzz_fast(keyed_server: ServerProcess) -> None:
    ran = _fuzz(keyed_server, max_examples=8, headers={"Authorization": f"Bearer {API_KEY}"})
    assert any("/v1/caption" in r for r in ran) and any("/v1/generate" in r for r in ran)


@pytest.mark.slow
def test_openapi_fuzz_thorough(server: ServerProcess) -> None:
    _fuzz(server, max_examples=40)
