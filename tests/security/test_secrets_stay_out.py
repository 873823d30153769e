"""Secrets, passwords and card numbers never reach logs, exports or the database: whole flows run
with every logger at DEBUG (in process, and the API as its own process with its access log on),
then the log records, the process's output, every CSV export and every stored row are searched."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.auth import account_admin as user_admin
from services.auth import accounts as users
from services.auth.access import Actor
from services.core.kst import kst_today
from services.core.models import Base, Role
from services.reporting import export_links, exports
from services.runtime import Runtime
from tests.factories import (
    APPROVED_CARD,
    INTERNAL_TOKEN,
    SandboxControl,
    auth_headers,
    make_runtime,
    new_order,
    sign_in_as,
)
from tests.servers import free_port

PASSWORDS = ("first-admin-password", "wrong-guess-password", "reset-to-this-password")
ADMIN = Actor("admin", Role.ADMIN)


def _secrets(runtime: Runtime, sandbox: SandboxControl, *extra: tuple[str, str]) -> dict[str, str]:
    token = sandbox.http.post(
        "/users/getToken",
        json={
            "imp_key": runtime.settings.portone_imp_key.get_secret_value(),
            "imp_secret": runtime.settings.portone_imp_secret.get_secret_value(),
        },
    ).json()["response"]["access_token"]
    return {
        "PortOne API secret": runtime.settings.portone_imp_secret.get_secret_value(),
        "PortOne access token": token,
        "internal API token": INTERNAL_TOKEN,
        "export link secret": runtime.settings.export_link_secret.get_secret_value(),
        "card number": APPROVED_CARD.replace("-", ""),
        "card number (dashed)": APPROVED_CARD,
        **{f"password {n}": password for n, password in enumerate(PASSWORDS)},
        **dict(extra),
    }


def _pay_and_refund(api: httpx.Client, sandbox: SandboxControl) -> str:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"]
    body = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}
    assert api.post("/api/payments/complete", json=body).status_code == 200
    refund = api.post(
        f"/api/payments/{imp_uid}/refunds", json={"amount": "1000", "reason": "r"}, headers=auth_headers()
    )
    assert refund.status_code == 201, refund.text
    return str(imp_uid)


def _users(runtime: Runtime) -> None:
    users.create_user(runtime, username="admin", password=PASSWORDS[0], role="admin", actor=None)
    users.authenticate(runtime, username="admin", password=PASSWORDS[0])
    with pytest.raises(users.LoginRefused):
        users.authenticate(runtime, username="admin", password=PASSWORDS[1])
    user_admin.reset_password(runtime, username="admin", new_password=PASSWORDS[2], actor=ADMIN)


def _link(runtime: Runtime) -> export_links.ExportLink:
    day = kst_today()
    filters = exports.ExportFilters(start=day - timedelta(days=1), end=day)
    return export_links.issue_link(
        runtime,
        exports.prepare(actor=ADMIN, kind="payments", filters=filters, include_personal_data=True),
        sign_in=sign_in_as(ADMIN.username),
    )


def _stored(runtime: Runtime) -> str:
    """Every row of every table, as text."""
    with runtime.db.read() as session:
        return "\n".join(
            repr(tuple(row)) for table in Base.metadata.sorted_tables for row in session.execute(select(table))
        )


@pytest.fixture
def every_record(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG on the root logger and on the loggers that do not propagate to it (uvicorn's)."""
    caplog.set_level(logging.DEBUG)
    detached = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.access", "uvicorn.error")]
    levels = [logger.level for logger in detached]
    for logger in detached:  # tests/servers.py starts uvicorn at WARNING: its access log is off
        logger.addHandler(caplog.handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        for logger, level in zip(detached, levels, strict=True):
            logger.removeHandler(caplog.handler)
            logger.setLevel(level)


@pytest.mark.reliability(
    area="access",
    case="secrets and card numbers in logs and exports",
    outcome="no API secret, access token, internal token, password or full card number in any log, CSV or row",
)
def test_no_secret_or_card_number_in_logs_exports_or_rows(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, every_record: pytest.LogCaptureFixture
) -> None:
    imp_uid = _pay_and_refund(api, sandbox)
    _users(runtime)
    link = _link(runtime)
    streamed = api.get(f"/api/exports/payments.csv?token={link.token}")
    assert streamed.status_code == 200 and imp_uid in streamed.text
    day = kst_today()
    filters = exports.ExportFilters(start=day - timedelta(days=1), end=day)
    csvs = [streamed.text]
    for kind in exports.ExportKind:
        whole = kind in (exports.ExportKind.PAYMENTS, exports.ExportKind.REFUNDS)
        request = exports.prepare(actor=ADMIN, kind=kind, filters=filters, include_personal_data=whole)
        csvs.append(exports.build_file(runtime, request).data.decode("utf-8-sig"))
    assert "411111******1111" in csvs[1]  # PortOne's masked number is what is kept and shown

    # The test's own HTTP clients log their requests from the main thread (a browser opens the
    # link in production); every other record (our services, the API's threads) counts.
    records = [r for r in every_record.records if not (r.threadName == "MainThread" and r.name.startswith("http"))]
    assert {r.name.split(".")[0] for r in records} >= {"httpx", "uvicorn"}  # the API's side did log
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in records)
    stored = _stored(runtime)
    for name, value in _secrets(runtime, sandbox, ("export link token", link.token)).items():
        assert value not in logged, f"{name} in the logs"
        for csv_text in csvs:
            assert value not in csv_text, f"{name} in an export"
        if name != "export link token":  # a link is stateless: nothing of it is stored
            assert value not in stored, f"{name} stored in the database"


@pytest.mark.reliability(
    area="access",
    case="secrets and card numbers in the API process's own output (access log on, DEBUG)",
    outcome="none of them in its stdout or stderr, the export link's token included",
)
def test_api_process_output_holds_no_secret(sandbox: SandboxControl, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'api.db'}"
    runtime = make_runtime(database_url=database_url, portone_api_url=sandbox.url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_URL": sandbox.url,
        "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "API_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    output = tmp_path / "api.log"
    command = [sys.executable, "-m", "api", "--port", str(port), "--log-level", "debug"]
    root = Path(__file__).resolve().parents[2]
    with output.open("wb") as sink:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            _wait_healthy(api, process)
            sandbox.configure(webhook_url=f"http://127.0.0.1:{port}/portone/webhook")
            imp_uid = _pay_and_refund(api, sandbox)
            _users(runtime)
            link = _link(runtime)
            streamed = api.get("/api/exports/payments.csv", params={"token": link.token})
            assert streamed.status_code == 200 and imp_uid in streamed.text
            secrets = _secrets(runtime, sandbox, ("export link token", link.token))
    finally:
        process.terminate()
        process.wait(timeout=30)
        runtime.close()
    text = output.read_text(encoding="utf-8", errors="replace")
    assert "/api/exports/payments.csv" in text and "/api/payments/complete" in text  # the access log was on
    for name, value in secrets.items():
        assert value not in text, f"{name} in the API process's output"


def _wait_healthy(api: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the API process exited"
        try:
            if api.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the API process did not answer /healthz")


ACCOUNT_NUMBER = "110-987-654321"  # a customer's refund account: personal data


@pytest.mark.reliability(
    area="access",
    case="a virtual-account refund's account number in logs, exports and rows",
    outcome="only its masked form (last four digits) anywhere after the refund; PortOne got it whole",
)
def test_a_refund_account_number_is_never_logged_exported_or_stored(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, every_record: pytest.LogCaptureFixture
) -> None:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], order["amount"], pay_method="vbank", card_number=None)["imp_uid"]
    sandbox.http.post(f"/sandbox/payments/{imp_uid}/deposit").raise_for_status()
    body = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}
    assert api.post("/api/payments/complete", json=body).status_code == 200
    account = {"bank": "88", "holder": "김체카", "number": ACCOUNT_NUMBER}
    refund = api.post(
        f"/api/payments/{imp_uid}/refunds",
        json={"amount": "1000", "reason": "r", "refund_account": account},
        headers=auth_headers("acct-1"),
    )
    assert refund.status_code == 201, refund.text
    assert [c["refund_account"]["number"] for c in sandbox.calls()["cancels"]] == ["110987654321"]
    day = kst_today()
    filters = exports.ExportFilters(start=day - timedelta(days=1), end=day)
    csvs = [
        exports.build_file(
            runtime, exports.prepare(actor=ADMIN, kind=kind, filters=filters, include_personal_data=True)
        ).data.decode("utf-8-sig")
        for kind in exports.ExportKind
    ]
    records = [r for r in every_record.records if not (r.threadName == "MainThread" and r.name.startswith("http"))]
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in records)
    stored = _stored(runtime)
    assert "********4321" in stored  # the masked number is what is kept
    for value in (ACCOUNT_NUMBER, ACCOUNT_NUMBER.replace("-", ""), "987654321"):
        assert value not in logged and value not in stored and value not in refund.text
        assert all(value not in text for text in csvs)
