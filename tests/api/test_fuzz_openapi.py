"""API fuzzing from our own OpenAPI schema (schemathesis strategies driven by hypothesis):
whatever it sends to any route, no 5xx, and every answer is one the schema declares (its status
and its body's schema)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import response_schema_conformance, status_code_conformance
from schemathesis.core.failures import FailureGroup

from api.app import create_app
from tests.factories import INTERNAL_TOKEN, SandboxControl, make_runtime

EXAMPLES_PER_ROUTE = 40


@pytest.mark.reliability(
    area="hostile input",
    case="API fuzzing from our own OpenAPI schema (schemathesis)",
    outcome="no route answers 5xx; every answer conforms to the schema",
)
def test_no_route_answers_5xx(database_url: str, sandbox: SandboxControl) -> None:
    """On SQLite and PostgreSQL: what one database stores, the other may refuse (a NUL, a length)."""
    runtime = make_runtime(database_url=database_url, portone_api_url=sandbox.url)
    app = create_app(runtime)
    app.state.runtime = runtime  # the lifespan does not run under the ASGI transport
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/orders", "/api/payments/complete", "/portone/webhook"}
    failures: list[str] = []
    nonconforming: list[str] = []
    calls: dict[str, int] = {}

    for operation in operations:

        @given(case=operation.as_strategy(), authorized=st.booleans())
        @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case, authorized: bool) -> None:
            if authorized:
                case.headers = {**(case.headers or {}), "Authorization": f"Bearer {INTERNAL_TOKEN}"}
            response = case.call()
            calls[case.operation.path] = calls.get(case.operation.path, 0) + 1
            # /readyz answering 503 is its job (not ready: e.g. no scheduled reconciliation in this test);
            # its body is checked against the schema like any other.
            if response.status_code >= 500 and not (case.operation.path == "/readyz" and response.status_code == 503):
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} -> {response.status_code}")
            try:
                case.validate_response(response, checks=[status_code_conformance, response_schema_conformance])
            except FailureGroup as exc:
                nonconforming.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:2000])

        fuzz()
    runtime.close()
    assert failures == []
    assert nonconforming == []
    assert all(calls.get(op.path, 0) >= 1 for op in operations), calls
    assert min(calls[path] for path in ("/api/orders", "/api/payments/complete")) >= 20, calls


@pytest.mark.reliability(
    area="hostile input",
    case="webhook with any content type",
    outcome="a 4xx or a processed delivery, never 5xx; recorded",
)
@pytest.mark.parametrize(
    "content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain", "application/xml"]
)
def test_webhook_with_any_content_type_never_500(api: object, content_type: str) -> None:
    import httpx

    assert isinstance(api, httpx.Client)
    for body in (b"", b"imp_uid=", b"<x/>", b'{"imp_uid": ["a"]}', b'{"imp_uid": 5}', "한글=값".encode()):
        response = api.post("/portone/webhook", content=body, headers={"Content-Type": content_type})
        assert response.status_code < 500, (body, response.text)
