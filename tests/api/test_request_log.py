"""`python -m api` with LOG_FORMAT=json: every line it writes is one JSON object, one per request with its
route template (never the path or query sent), status, duration and request id (echoed to the caller)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from services.core.migrate import upgrade
from tests.factories import INTERNAL_TOKEN, SandboxControl
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _lines(process: subprocess.Popen[str]) -> list[str]:
    process.terminate()
    out, _ = process.communicate(timeout=30)
    return [line for line in out.splitlines() if line.strip()]


def test_json_request_lines_name_the_route_not_the_path(database_url: str, sandbox: SandboxControl) -> None:
    upgrade(database_url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_URL": sandbox.url,
        "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "the API exited"
                try:
                    if api.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.1)
            known = api.get("/api/orders/ord-kim-secret?email=kim@example.com", headers={"X-Request-ID": "req-42"})
            forged = api.get("/api/orders/ord-2", headers={"X-Request-ID": "line\tbreak"})
            refused = api.post("/api/payments/imp_123456/refunds", json={"reason": "x"})
            nowhere = api.get("/secret-path/kim@example.com")
            schema = api.get("/openapi.json")
    finally:
        lines = _lines(process)
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is JSON
    requests = [r for r in records if r.get("logger") == "chekar.request"]
    by_id = {r["request_id"]: r for r in requests}

    assert known.status_code == 404 and known.headers["X-Request-ID"] == "req-42"
    assert by_id["req-42"]["route"] == "/api/orders/{merchant_uid}"
    assert by_id["req-42"]["method"] == "GET" and by_id["req-42"]["status"] == 404
    assert isinstance(by_id["req-42"]["duration_ms"], float)
    replaced = forged.headers["X-Request-ID"]
    assert replaced != "line\tbreak" and by_id[replaced]["route"] == "/api/orders/{merchant_uid}"
    assert by_id[refused.headers["X-Request-ID"]]["route"] == "/api/payments/{imp_uid}/refunds"
    assert by_id[refused.headers["X-Request-ID"]]["status"] == 401
    assert by_id[nowhere.headers["X-Request-ID"]]["route"] == "(no route)"
    assert by_id[schema.headers["X-Request-ID"]]["route"] == "/openapi.json"  # a Starlette route, not FastAPI's
    assert not any("color_message" in r for r in records)  # uvicorn's terminal-coloured copy stays out
    whole = "\n".join(lines)
    for leaked in ("ord-kim-secret", "kim@example.com", "imp_123456", "secret-path"):
        assert leaked not in whole
    assert not any(r.get("logger") == "uvicorn.access" for r in records)  # uvicorn's own access log is off


def test_a_request_id_ending_in_a_line_break_is_replaced() -> None:
    """`$` also matches before a final newline: the id must be the whole header value."""
    from api.request_log import request_id_of

    assert request_id_of({"headers": [(b"x-request-id", b"abc-123")]}) == "abc-123"
    replaced = request_id_of({"headers": [(b"x-request-id", b"abc-123\n")]})
    assert replaced != "abc-123\n" and "\n" not in replaced and len(replaced) == 32
