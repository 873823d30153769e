"""`make serve` (tools/serve.py) as a real process against a sandbox process pretending to be PortOne
(PORTONE_MODE=test, real-looking secrets) on a throwaway PostgreSQL with two API workers: the dashboard
and the API answer; a payment, its webhook and a refund go through; SIGTERM during a refund leaves it
succeeded or settle-able, never half-recorded; every output line is JSON and none holds a secret or
the buyer's data. Refusals: sandbox mode; a child that dies stops serve non-zero."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.core.config import Settings
from services.core.models import Payment, Refund, RefundStatus, WebhookEvent
from services.refunds.settlement import settle_with_lease
from services.runtime import Runtime, build_runtime
from tests.servers import free_port
from tools.serve import SANDBOX_REFUSAL, procfile

ROOT = Path(__file__).resolve().parents[2]
BUYER = {"customer_name": "박서브", "customer_email": "serve-buyer@example.com", "customer_phone": "010-9876-5432"}
CARD = "4111-1111-1111-1111"
STARTUP_SECONDS = 120


def _secrets() -> dict[str, str]:
    return {
        "PORTONE_IMP_KEY": f"imp{secrets.randbelow(10**12):012d}",
        "PORTONE_IMP_SECRET": secrets.token_urlsafe(48),
        "PORTONE_V2_API_SECRET": secrets.token_urlsafe(48),
        "PORTONE_V2_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "INTERNAL_API_TOKEN": secrets.token_urlsafe(32),
        "EXPORT_LINK_SECRET": secrets.token_urlsafe(32),
    }


@dataclass
class Process:
    """A subprocess whose merged output is collected line by line as it comes."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str]) -> Process:
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        process = cls(popen)
        process._reader = threading.Thread(target=process._read, daemon=True)
        process._reader.start()
        return process

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def stderr(self) -> str:
        return self.popen.stderr.read() if self.popen.stderr else ""

    def finish(self, timeout: float) -> int:
        code = self.popen.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]  # fails on any line that is not JSON


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Served:
    serve: Process
    sandbox_url: str
    api_url: str
    dashboard_url: str
    env: dict[str, str]


@contextmanager
def _sandbox(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    sandbox = Process.start([sys.executable, "-m", "sandbox", "--port", str(port), "--log-level", "warning"], env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until(lambda: _answers(f"{url}/sandbox/config"), "the sandbox never answered")
        yield url
    finally:
        sandbox.stop()


@contextmanager
def _serve(database_url: str, *, workers: int, **extra: str) -> Iterator[Served]:
    """The sandbox as PortOne, then `python tools/serve.py` pointed at it; both stopped afterwards."""
    api_port, dashboard_port = free_port(), free_port()
    api_url, dashboard_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dashboard_port}"
    base = {key: value for key, value in os.environ.items() if not key.startswith(("PORTONE_", "SANDBOX_"))}
    shared = {**base, **_secrets(), "PYTHONUNBUFFERED": "1"}
    sandbox_env = {**shared, "SANDBOX_WEBHOOK_URL": f"{api_url}/portone/webhook"}
    with _sandbox(sandbox_env) as sandbox_url:
        env = {
            **shared,
            "DATABASE_URL": database_url,
            "PORTONE_MODE": "test",
            "PORTONE_API_URL": sandbox_url,
            "PORTONE_V2_API_URL": sandbox_url,
            "API_PORT": str(api_port),
            "DASHBOARD_PORT": str(dashboard_port),
            "API_WORKERS": str(workers),
            "API_PUBLIC_URL": api_url,
            "DASHBOARD_URL": dashboard_url,
            **extra,
        }
        serve = Process.start([sys.executable, "tools/serve.py"], env)
        try:
            ready = lambda: any('"ready: ' in line for line in serve.lines)  # noqa: E731
            _wait_until(lambda: ready() or serve.popen.poll() is not None, "serve never got ready", STARTUP_SECONDS)
            assert ready(), f"serve exited {serve.popen.poll()}:\n" + "\n".join(serve.lines[-30:]) + serve.stderr()
            yield Served(serve, sandbox_url, api_url, dashboard_url, env)
        finally:
            serve.stop()


def _runtime(env: dict[str, str]) -> Runtime:
    """Our records, read as the served processes read them (test mode, the same secrets)."""
    names = ("DATABASE_URL", "PORTONE_API_URL", "PORTONE_V2_API_URL", "PORTONE_IMP_KEY", "PORTONE_IMP_SECRET")
    names += ("PORTONE_V2_API_SECRET", "PORTONE_V2_WEBHOOK_SECRET", "INTERNAL_API_TOKEN", "EXPORT_LINK_SECRET")
    return build_runtime(Settings(portone_mode="test", **{name.lower(): env[name] for name in names}))


def _portone_payment(served: Served, imp_uid: str) -> dict[str, Any]:
    with httpx.Client(base_url=served.sandbox_url, timeout=30) as portone:
        token = portone.post(
            "/users/getToken",
            json={"imp_key": served.env["PORTONE_IMP_KEY"], "imp_secret": served.env["PORTONE_IMP_SECRET"]},
        ).json()["response"]["access_token"]
        answer = portone.get(f"/payments/{imp_uid}", headers={"Authorization": f"Bearer {token}"})
        answer.raise_for_status()
        return dict(answer.json()["response"])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_serve_takes_a_payment_a_webhook_and_a_refund_and_stops_gracefully_mid_refund(database_url: str) -> None:
    with _serve(database_url, workers=2) as served:
        env = served.env
        # The dashboard answers: Streamlit's health route and the page that signs in.
        assert httpx.get(f"{served.dashboard_url}/_stcore/health", timeout=10).text == "ok"
        page = httpx.get(served.dashboard_url + "/", timeout=10)
        assert page.status_code == 200 and "<noscript>" in page.text.lower()
        # dashboard_server.py (with the sign-in cookie's routes), not bare app.py: a cross-site post is refused.
        cross_site = httpx.post(
            f"{served.dashboard_url}/session/start",
            json={},
            headers={"Origin": "https://elsewhere.example"},
            timeout=10,
        )
        assert (cross_site.status_code, cross_site.json()) == (403, {"ok": False})

        with (
            httpx.Client(base_url=served.api_url, timeout=60) as api,
            httpx.Client(base_url=served.sandbox_url, timeout=60) as sandbox,
        ):
            assert api.get("/healthz").json()["mode"] == "test"
            assert api.get("/openapi.json").status_code == 200  # test mode describes itself; live would not
            order = api.post("/api/orders", json={**BUYER, "currency": "KRW"})
            assert order.status_code == 201, order.text
            merchant_uid = order.json()["merchant_uid"]
            paid = sandbox.post(
                "/sandbox/checkout",
                json={"merchant_uid": merchant_uid, "amount": order.json()["amount"], "card_number": CARD},
            ).json()
            imp_uid = paid["imp_uid"]
            complete = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
            assert complete.status_code == 200, complete.text

            runtime = _runtime(env)
            try:
                # The sandbox's own webhook reached the API and is recorded once.
                def webhooks() -> int:
                    with runtime.db.read() as session:
                        count = select(func.count()).select_from(WebhookEvent).where(WebhookEvent.imp_uid == imp_uid)
                        return int(session.scalar(count.where(WebhookEvent.processed_at.is_not(None))) or 0)

                _wait_until(lambda: webhooks() >= 1, "the webhook never arrived")
                time.sleep(1)
                assert webhooks() == 1

                refund_headers = {
                    "Authorization": f"Bearer {env['INTERNAL_API_TOKEN']}",
                    "Idempotency-Key": uuid.uuid4().hex,
                }
                first = api.post(
                    f"/api/payments/{imp_uid}/refunds",
                    json={"amount": "10000", "reason": "고객 요청"},
                    headers={**refund_headers, "X-Request-ID": "refund-one"},
                )
                assert first.status_code == 201, first.text
                assert first.headers["X-Request-ID"] == "refund-one"

                # PortOne applies the next cancel, then holds its answer back 5 s; SIGTERM meanwhile.
                sandbox.post("/sandbox/config", json={"cancel_timeout_after_apply": 1, "cancel_hang_seconds": 5})
                answers: list[httpx.Response | Exception] = []

                def refund() -> None:
                    try:
                        answers.append(
                            api.post(
                                f"/api/payments/{imp_uid}/refunds",
                                json={"amount": "15000", "reason": "고객 요청"},
                                headers={**refund_headers, "Idempotency-Key": uuid.uuid4().hex},
                            )
                        )
                    except httpx.HTTPError as exc:
                        answers.append(exc)

                worker = threading.Thread(target=refund)
                worker.start()
                _wait_until(
                    lambda: _portone_payment(served, imp_uid)["cancel_amount"] == 25000, "PortOne never applied it"
                )
                os.killpg(served.serve.popen.pid, signal.SIGTERM)  # as a terminal's Ctrl-C or systemd would
                time.sleep(0.5)
                os.killpg(served.serve.popen.pid, signal.SIGTERM)  # and again, impatient: the shutdown goes on
                worker.join(timeout=60)
                assert served.serve.finish(timeout=90) == 0
                stopped = served.serve.records()

                # Finished, or left for settlement by asking PortOne; settled, ours equals PortOne's.
                [answer] = answers
                if isinstance(answer, httpx.Response) and answer.status_code == 201:
                    settled = 0
                else:
                    settled = settle_with_lease(runtime, imp_uid=imp_uid)
                with runtime.db.read() as session:
                    payment = session.scalars(select(Payment).where(Payment.imp_uid == imp_uid)).one()
                    refunds = session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all()
                    statuses = sorted((r.status, r.amount) for r in refunds)
                    cancelled = payment.cancel_amount
                portone = _portone_payment(served, imp_uid)
                assert statuses == [(RefundStatus.SUCCEEDED, Decimal(10000)), (RefundStatus.SUCCEEDED, Decimal(15000))]
                assert cancelled == Decimal(str(portone["cancel_amount"])) == Decimal(25000), settled
                assert len(sandbox.get("/sandbox/calls").json()["cancels"]) == 2  # never sent again
            finally:
                runtime.close()

    # Every line of serve's output is one JSON object, each naming its process.
    assert {r["process"] for r in stopped} >= {"serve", "api", "dashboard", "scheduler"}
    # Streamlit's own lines are text: wrapped, each a JSON object of its own.
    assert any("Streamlit" in r["message"] and set(r) == {"time", "process", "message"} for r in stopped)
    requests = [r for r in stopped if r.get("logger") == "chekar.request"]
    refund_lines = [r for r in requests if r["request_id"] == "refund-one"]
    assert [(r["process"], r["method"], r["route"], r["status"]) for r in refund_lines] == [
        ("api", "POST", "/api/payments/{imp_uid}/refunds", 201)
    ]
    assert isinstance(refund_lines[0]["duration_ms"], float)
    started = {r["message"] for r in stopped if r["process"] == "api" and "Started server process" in r["message"]}
    assert len(started) == 2, started  # API_WORKERS=2: two worker processes
    assert any("SIGTERM received" in r["message"] for r in stopped if r["process"] == "serve")
    whole = "\n".join(served.serve.lines)
    for name in ("PORTONE_IMP_KEY", "PORTONE_IMP_SECRET", "PORTONE_V2_API_SECRET", "INTERNAL_API_TOKEN"):
        assert env[name] not in whole, name
    for name in ("PORTONE_V2_WEBHOOK_SECRET", "EXPORT_LINK_SECRET"):
        assert env[name] not in whole, name
    for value in (*BUYER.values(), "01098765432", "serve-buyer", imp_uid, merchant_uid):
        assert value not in whole, value


def _paid(api: httpx.Client, sandbox: httpx.Client) -> str:
    """An order through the API, paid in the sandbox's checkout, completed; its imp_uid."""
    order = api.post("/api/orders", json={**BUYER, "currency": "KRW"})
    assert order.status_code == 201, order.text
    merchant_uid = order.json()["merchant_uid"]
    checkout = {"merchant_uid": merchant_uid, "amount": order.json()["amount"], "card_number": CARD}
    imp_uid = str(sandbox.post("/sandbox/checkout", json=checkout).json()["imp_uid"])
    complete = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
    assert complete.status_code == 200, complete.text
    return imp_uid


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_refund_cut_off_after_the_grace_is_left_pending_and_settled_from_portone(database_url: str) -> None:
    """PortOne applies the cancel and answers only after the API's 30 s grace: the API gives up on the
    request and stops with the attempt recorded but unanswered; the existing settlement reads PortOne
    and records it once."""
    lease = {"REFUND_LOCK_LEASE_SECONDS": "2", "PORTONE_TIMEOUT_SECONDS": "90"}
    with _serve(database_url, workers=1, **lease) as served:
        with (
            httpx.Client(base_url=served.api_url, timeout=120) as api,
            httpx.Client(base_url=served.sandbox_url, timeout=30) as sandbox,
        ):
            imp_uid = _paid(api, sandbox)
            sandbox.post("/sandbox/config", json={"cancel_timeout_after_apply": 1, "cancel_hang_seconds": 80})
            answers: list[httpx.Response | Exception] = []

            def refund() -> None:
                headers = {"Authorization": f"Bearer {served.env['INTERNAL_API_TOKEN']}", "Idempotency-Key": "cut"}
                try:
                    answers.append(
                        api.post(
                            f"/api/payments/{imp_uid}/refunds",
                            json={"amount": "20000", "reason": "고객 요청"},
                            headers=headers,
                        )
                    )
                except httpx.HTTPError as exc:
                    answers.append(exc)

            worker = threading.Thread(target=refund)
            worker.start()
            runtime = _runtime(served.env)
            try:
                _wait_until(lambda: _portone_payment(served, imp_uid)["cancel_amount"] == 20000, "never applied")
                stopping = time.monotonic()
                os.killpg(served.serve.popen.pid, signal.SIGTERM)
                assert served.serve.finish(timeout=120) == 0
                assert time.monotonic() - stopping < 60  # the grace, not PortOne's 80 s
                worker.join(timeout=30)
                [answer] = answers
                assert not (isinstance(answer, httpx.Response) and answer.status_code == 201), answer
                with runtime.db.read() as session:
                    [left] = session.scalars(select(Refund).join(Payment).where(Payment.imp_uid == imp_uid)).all()
                    # Recorded before it was sent, its outcome open (pending; unknown had the call failed on the
                    # way down): never half-recorded, no money counted.
                    assert left.status in (RefundStatus.PENDING, RefundStatus.UNKNOWN) and left.amount == 20000
                    assert session.scalar(select(Payment.cancel_amount).where(Payment.imp_uid == imp_uid)) == 0
                time.sleep(2.5)  # the dead process's lease lapses
                assert settle_with_lease(runtime, imp_uid=imp_uid) == 1
                with runtime.db.read() as session:
                    [settled] = session.scalars(select(Refund).join(Payment).where(Payment.imp_uid == imp_uid)).all()
                    cancelled = session.scalar(select(Payment.cancel_amount).where(Payment.imp_uid == imp_uid))
                assert settled.status == RefundStatus.SUCCEEDED
                assert cancelled == Decimal(str(_portone_payment(served, imp_uid)["cancel_amount"])) == Decimal(20000)
                assert len(sandbox.get("/sandbox/calls").json()["cancels"]) == 1  # settled by asking, never resent
            finally:
                runtime.close()
    api_said = [r["message"] for r in served.serve.records() if r["process"] == "api"]
    assert any("Cancel" in message and "running task" in message for message in api_said), api_said[-10:]


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"PORTONE_MODE": "sandbox"}, SANDBOX_REFUSAL),
        ({"PORTONE_MODE": "test", "PORTONE_IMP_KEY": "sandbox-imp-key"}, "PORTONE_IMP_KEY must be set to a real value"),
        ({"PORTONE_MODE": "test", "FEE_TABLE": "{nope"}, "FEE_TABLE: not valid JSON"),
    ],
)
def test_serve_refuses_in_plain_words(settings: dict[str, str], said: str) -> None:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("PORTONE_", "SANDBOX_"))}
    env = {**base, **_secrets(), **settings, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "tools/serve.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert said in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # nothing checked, migrated or started


def test_serve_refuses_sqlite_with_two_api_workers_through_check_config(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # PortOne's checks fail too; the workers' line is what counts here
    base = {key: value for key, value in os.environ.items() if not key.startswith(("PORTONE_", "SANDBOX_"))}
    env = {
        **base,
        **_secrets(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "PORTONE_MODE": "test",
        "PORTONE_API_URL": closed,
        "PORTONE_V2_API_URL": closed,
        "API_WORKERS": "2",
        "API_PORT": str(free_port()),
        "DASHBOARD_PORT": str(free_port()),
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "tools/serve.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    messages = [json.loads(line)["message"] for line in done.stdout.splitlines()]
    assert any("SQLite takes one API process" in message for message in messages), messages
    assert not any(message.startswith(("running -m cli migrate", "starting ")) for message in messages), messages
    assert "serve: check-config failed" in done.stderr


def _processes() -> Iterator[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, command line) of every process, from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z":
            yield int(entry.name), int(fields[1]), int(fields[2]), cmdline


def _children_of(pid: int) -> dict[int, str]:
    return {child: cmdline for child, parent, _group, cmdline in _processes() if parent == pid}


def _in_groups(groups: set[int]) -> dict[int, str]:
    return {pid: cmdline for pid, _parent, group, cmdline in _processes() if group in groups}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_child_that_dies_stops_serve_non_zero_naming_it(database_url: str) -> None:
    with _serve(database_url, workers=1) as served:
        children = _children_of(served.serve.popen.pid)
        [scheduler] = [pid for pid, cmd in children.items() if "cli scheduler" in cmd]
        os.kill(scheduler, signal.SIGKILL)
        assert served.serve.finish(timeout=90) == 1
        records = served.serve.records()
        assert any(
            r["message"] == f"scheduler died (exit {-signal.SIGKILL})" for r in records if r["process"] == "serve"
        )
        assert "serve: scheduler died" in served.serve.stderr()
        left = _in_groups(set(children))  # each child ran in its own process group: all of them ended
        assert left == {}, left


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_starts_while_portone_is_unreachable_and_says_so(database_url: str) -> None:
    """A PortOne blip at start-up must not keep webhooks and the dashboard down: check-config runs
    with --at-start (unreachable is a warning there), and /readyz then names what is wrong."""
    closed = f"http://127.0.0.1:{free_port()}"
    with _serve(database_url, workers=1, PORTONE_API_URL=closed, PORTONE_V2_API_URL=closed) as served:
        assert any("warning" in r["message"] and "unreachable" in r["message"] for r in served.serve.records())
        assert httpx.get(f"{served.api_url}/healthz", timeout=10).status_code == 200
        ready = httpx.get(f"{served.api_url}/readyz", timeout=30)
        assert ready.status_code == 503 and "portone" in ready.json()["failed"], ready.text


def test_every_procfile_command_exists_and_parses_its_arguments() -> None:
    commands = procfile({})
    assert list(commands) == ["release", "api", "dashboard", "scheduler"]
    assert "--workers" not in commands["api"]  # python -m api takes API_WORKERS through Settings
    assert commands["api"][commands["api"].index("--port") + 1] == "8000"  # the documented default
    env = {**os.environ, "PORTONE_MODE": "sandbox"}
    for name, argv in commands.items():
        if "streamlit" in argv:
            script = argv[argv.index("run") + 1]
            assert (ROOT / script).is_file(), f"{name}: {script} is missing"
        done = subprocess.run(  # noqa: S603 - our own interpreter and modules
            [*argv, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"
        assert "usage" in done.stdout.lower(), name
