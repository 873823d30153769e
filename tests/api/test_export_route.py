"""GET /api/exports/{kind}.csv over loopback: a signed link streams the CSV, once, while the sign-in
that made it lasts; anything else is refused with a clear JSON error."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.routes.exports import include_export_routes
from services.auth import accounts as users
from services.auth.access import Actor
from services.core.errors import Forbidden
from services.core.kst import kst_today
from services.core.models import AuditEntry, Role
from services.reporting import export_links, exports
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime, sign_in_as
from tests.servers import serve_in_thread
from tests.services.reporting.test_sales import paid

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


def _path(link: export_links.ExportLink) -> str:
    parts = urlsplit(link.url)
    return f"{parts.path}?{parts.query}"


def _today() -> exports.ExportFilters:
    day = kst_today()
    return exports.ExportFilters(start=day, end=day)


def test_a_signed_link_streams_the_csv(export_api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    users.create_user(runtime, username="boss", password="boss-password-1", role="admin", actor=None)
    imp_uids = {paid(runtime, sandbox, buyer_name="=HYPERLINK(1)"), paid(runtime, sandbox, "USD")}
    link = export_links.issue_link(
        runtime,
        exports.prepare(actor=ADMIN, kind="payments", filters=_today(), include_personal_data=True),
        sign_in=sign_in_as("boss"),
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
    link = export_links.issue_link(runtime, request, sign_in=sign_in_as("boss"))

    def refused(url: str, status: int, code: str) -> None:
        response = export_api.get(url)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"] == code and response.json()["message"]

    refused("/api/exports/refunds.csv", 401, "unauthorized")
    refused(f"/api/exports/refunds.csv?token={link.token[:-3]}xyz", 401, "link_invalid")
    refused(f"/api/exports/alerts.csv?token={link.token}", 403, "forbidden")
    refused(f"/api/exports/secrets.csv?token={link.token}", 404, "not_found")
    # A link whose sign-in ends before its TTL expires with the sign-in (here at once, after 1 s).
    idle = runtime.settings.session_idle_minutes * 60
    ending = export_links.issue_link(runtime, request, sign_in=sign_in_as("boss", idle_for=idle - 1))
    assert ending.expires_at <= datetime.fromtimestamp(time.time() + 1, UTC)
    time.sleep(1.5)
    refused(_path(ending), 401, "link_expired")
    short = make_runtime(
        database_url=runtime.db.url, portone_api_url=runtime.settings.portone_api_url, export_link_ttl_seconds=1
    )
    try:
        expired = export_links.issue_link(short, request, sign_in=sign_in_as("boss"))
    finally:
        short.close()
    time.sleep(2.1)  # past the signature's own max age (whole seconds)
    refused(_path(expired), 401, "link_expired")
    users.set_role(runtime, username="boss", role="operator", actor=Actor("root", Role.ADMIN))
    refused(_path(link), 403, "forbidden")  # refused, and not used up: the role check comes first
    users.set_role(runtime, username="boss", role="admin", actor=Actor("root", Role.ADMIN))
    assert export_api.get(_path(link)).status_code == 200
    refused(_path(link), 401, "link_used")


@pytest.mark.reliability(
    area="access",
    case="an export link opened a second time",
    outcome="the first opening streams the CSV; the second is refused (401 link_used)",
)
def test_a_link_works_once(export_api: httpx.Client, runtime: Runtime) -> None:
    users.create_user(runtime, username="boss", password="boss-password-1", role="admin", actor=None)
    link = export_links.issue_link(
        runtime, exports.prepare(actor=ADMIN, kind="alerts", filters=_today()), sign_in=sign_in_as("boss")
    )
    assert export_api.get(_path(link)).status_code == 200
    again = export_api.get(_path(link))
    assert again.status_code == 401 and again.json()["error"] == "link_used", again.text


@pytest.mark.reliability(
    area="access",
    case="one export link opened at once many times through two API processes' worth of servers",
    outcome="exactly one opening streams the CSV; every other is refused (401 link_used)",
)
def test_concurrent_openings_of_one_link_one_wins(runtime: Runtime, sandbox: SandboxControl) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    users.create_user(runtime, username="boss", password="boss-password-1", role="admin", actor=None)
    link = export_links.issue_link(
        runtime, exports.prepare(actor=ADMIN, kind="alerts", filters=_today()), sign_in=sign_in_as("boss")
    )
    other = make_runtime(database_url=runtime.db.url, portone_api_url=sandbox.url)  # its own engine and pool
    servers = [serve_in_thread(create_app(runtime)), serve_in_thread(create_app(other))]
    attempts = 8
    barrier = Barrier(attempts)

    def open_once(i: int) -> int:
        with httpx.Client(base_url=servers[i % 2].url, timeout=60) as client:
            barrier.wait()
            return client.get(_path(link)).status_code

    try:
        with ThreadPoolExecutor(attempts) as pool:
            statuses = sorted(pool.map(open_once, range(attempts)))
    finally:
        for served in servers:
            served.stop()
        other.close()
    assert statuses == [200] + [401] * (attempts - 1), statuses


def test_a_link_ends_when_its_sign_in_ends(export_api: httpx.Client, runtime: Runtime) -> None:
    """Signing out (dashboard.auth.sign_out) revokes the sign-in's unused links, not another sign-in's."""
    users.create_user(runtime, username="boss", password="boss-password-1", role="admin", actor=None)
    request = exports.prepare(actor=ADMIN, kind="alerts", filters=_today())
    mine, elsewhere = sign_in_as("boss"), sign_in_as("boss")
    used = export_links.issue_link(runtime, request, sign_in=mine)
    assert export_api.get(_path(used)).status_code == 200
    unused = export_links.issue_link(runtime, request, sign_in=mine)
    other = export_links.issue_link(runtime, request, sign_in=elsewhere)
    assert export_links.revoke_sign_in(runtime, mine.session_id) == 1
    answer = export_api.get(_path(unused))
    assert answer.status_code == 401 and answer.json()["error"] == "link_revoked", answer.text
    assert export_api.get(_path(used)).json()["error"] == "link_used"
    assert export_api.get(_path(other)).status_code == 200
    with pytest.raises(Forbidden):  # an ended sign-in makes no links
        export_links.issue_link(runtime, request, sign_in=sign_in_as("boss", signed_in_ago=13 * 3600))
    with pytest.raises(Forbidden):  # nor one for another user
        export_links.issue_link(runtime, request, sign_in=sign_in_as("someone-else"))
