"""GET /api/exports/{kind}.csv over loopback: a signed link streams the CSV; anything else is refused
with a clear JSON error."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.exports import include_export_routes
from services import exports, reports, users
from services.access import Actor
from services.models import AuditEntry, Role
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.servers import serve_in_thread
from tests.services.test_reports import paid

ADMIN = Actor("boss", Role.ADMIN)


@pytest.fixture
def export_api(runtime: Runtime) -> Iterator[httpx.Client]:
    app = create_app(runtime)
    include_export_routes(app)
    served = serve_in_thread(app)
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            yield client
    finally:
        served.stop()


def _path(link: exports.ExportLink) -> str:
    parts = urlsplit(link.url)
    return f"{parts.path}?{parts.query}"


def _today() -> exports.ExportFilters:
    day = datetime.now(reports.KST).date()
    return exports.ExportFilters(start=day, end=day)


def test_a_signed_link_streams_the_csv(export_api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    users.create_user(runtime, username="boss", password="boss-password-1", role="admin", actor=None)
    imp_uids = {paid(runtime, sandbox, buyer_name="=HYPERLINK(1)"), paid(runtime, sandbox, "USD")}
    link = exports.issue_link(
        runtime, exports.prepare(actor=ADMIN, kind="payments", filters=_today(), include_personal_data=True)
    )
    with export_api.stream("GET", _path(link)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["transfer-encoding"] == "chunked"  # streamed, no length known up front
        assert response.headers["cache-control"] == "no-store"
        day = _today().start.strftime("%Y%m%d")
        assert response.headers["content-disposition"] == f'attachment; filename="chekar-payments-{day}-{day}.csv"'
        data = response.read()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data[3:].decode(), newline="")))
    assert {r["포트원 결제번호"] for r in rows} == imp_uids
    assert {r["결제금액"] for r in rows} == {"50000", "38.50"}
    assert "'=HYPERLINK(1)" in {r["구매자명"] for r in rows}
    with runtime.db.read() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "export.csv"))
    assert entry is not None and entry.actor == "boss"
    assert {k: entry.detail[k] for k in ("rows", "masked", "via", "completed")} == {
        "rows": 2,
        "masked": False,
        "via": "link",
        "completed": True,
    }


def test_bad_links_are_refused_with_json(export_api: httpx.Client, runtime: Runtime) -> None:
    users.create_user(runtime, username="boss", password="boss-password-1", role="admin", actor=None)
    request = exports.prepare(actor=ADMIN, kind="refunds", filters=_today(), include_personal_data=True)
    link = exports.issue_link(runtime, request)
    assert export_api.get(_path(link)).status_code == 200

    def refused(url: str, status: int, code: str) -> None:
        response = export_api.get(url)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"] == code and response.json()["message"]

    refused("/api/exports/refunds.csv", 401, "unauthorized")
    expired, _ = exports.make_token(runtime, request, now=time.time() - runtime.settings.export_link_ttl_seconds - 1)
    refused(f"/api/exports/refunds.csv?token={expired}", 401, "link_expired")
    refused(f"/api/exports/refunds.csv?token={link.token[:-3]}xyz", 401, "link_invalid")
    refused(f"/api/exports/alerts.csv?token={link.token}", 403, "forbidden")
    refused(f"/api/exports/secrets.csv?token={link.token}", 404, "not_found")
    users.set_role(runtime, username="boss", role="operator", actor=Actor("root", Role.ADMIN))
    refused(_path(link), 403, "forbidden")
