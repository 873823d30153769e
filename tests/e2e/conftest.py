"""The whole stack in a real browser: the PortOne sandbox, our API and the Streamlit dashboard run
as subprocesses on free loopback ports over a fresh SQLite database, driven by Playwright with
Debian's Chromium (never a browser Playwright downloads: `playwright install` is not used).

Streamlit draws its UI over a websocket: wait with Playwright's auto-waiting locators and
`wait_for_app` (the app is mounted and no script is running), never with sleeps.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
STARTUP_TIMEOUT_SECONDS = 60
STOP_GRACE_SECONDS = 10
UI_TIMEOUT_MS = 30_000
INTERNAL_TOKEN = "e2e-internal-token"
OPERATOR = ("e2e-operator", "e2e-operator-password")
ADMIN = ("e2e-admin", "e2e-admin-password")


@dataclass
class Server:
    name: str
    argv: list[str]
    health_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with everything it started
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def answers(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()


@dataclass(frozen=True)
class Stack:
    sandbox_url: str
    api_url: str
    dashboard_url: str
    database_url: str
    env: dict[str, str]


def _run(argv: list[str], env: dict[str, str], stdin: str = "") -> str:
    result = subprocess.run(argv, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv[1:])} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _wait_until_ready(servers: list[Server]) -> None:
    pending = list(servers)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while pending:
        for server in list(pending):
            if server.process is not None and server.process.poll() is not None:
                pytest.fail(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
            if server.answers():
                pending.remove(server)
        if pending and time.monotonic() > deadline:
            tails = "\n\n".join(f"--- {s.name} ---\n{s.log_tail()}" for s in pending)
            pytest.fail(f"no answer within {STARTUP_TIMEOUT_SECONDS}s from {[s.name for s in pending]}:\n{tails}")
        time.sleep(0.2)


def _add_user_in_process(database_url: str, portone_api_url: str, username: str, password: str, *, role: str) -> None:
    from services.auth.accounts import create_user
    from services.core.config import Settings
    from services.runtime import build_runtime

    runtime = build_runtime(Settings(database_url=database_url, portone_api_url=portone_api_url))
    try:
        create_user(runtime, username=username, password=password, role=role, actor=None)
    finally:
        runtime.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Sandbox, API and dashboard as subprocesses over one fresh SQLite database; stopped at the end."""
    yield from _stack(tmp_path_factory.mktemp("e2e"), seed_demo=False)


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same stack with `make run`'s demo data (`python -m cli seed-demo`): a quarter of payments."""
    yield from _stack(tmp_path_factory.mktemp("e2e-demo"), seed_demo=True)


def _stack(workdir: Path, *, seed_demo: bool) -> Iterator[Stack]:
    sandbox_port, api_port, dashboard_port = free_port(), free_port(), free_port()
    sandbox_url, api_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{api_port}"
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    database_url = f"sqlite:///{workdir / 'e2e.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_URL": sandbox_url,
        "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "API_PUBLIC_URL": api_url,
        "PYTHONUNBUFFERED": "1",
    }
    python = sys.executable
    servers = [
        Server("sandbox", [python, "-m", "sandbox", "--port", str(sandbox_port)], f"{sandbox_url}/sandbox/health",
               workdir / "sandbox.log"),
        Server("api", [python, "-m", "api", "--port", str(api_port)], f"{api_url}/healthz", workdir / "api.log"),
        Server("dashboard", [python, "-m", "streamlit", "run", "dashboard_server.py", "--server.port", str(dashboard_port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
               f"{dashboard_url}/_stcore/health", workdir / "dashboard.log"),
    ]  # fmt: skip
    try:
        servers[0].start(env)  # the sandbox needs no database: it boots while we migrate
        _run([python, "-m", "cli", "migrate"], env)
        for server in servers[1:]:
            server.start(env)
        # Users while the API and the dashboard boot: one through the command line (password on
        # standard input), one through services against the same database.
        username, password = OPERATOR
        _run([python, "-m", "cli", "users", "add", username, "--role", "operator"], env, stdin=password + "\n")
        _add_user_in_process(database_url, sandbox_url, *ADMIN, role="admin")
        _wait_until_ready(servers)
        httpx.post(
            f"{sandbox_url}/sandbox/config", json={"webhook_url": f"{api_url}/portone/webhook"}
        ).raise_for_status()
        if seed_demo:
            _run([python, "-m", "cli", "seed-demo"], env)
        yield Stack(sandbox_url, api_url, dashboard_url, database_url, env)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="ko-KR")
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def wait_for_app(page: Page) -> None:
    """The Streamlit app is connected and no script run is in progress (Streamlit's own markers)."""
    page.locator('[data-testid="stApp"][data-test-connection-state="CONNECTED"]').wait_for(state="visible")
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(state="visible")
    expect(page.get_by_test_id("stSpinner")).to_have_count(0)


def open_link(page: Page, link: Locator) -> None:
    """Follow a navigation link and wait for the new page's run to finish.

    The address changes when the server starts running the new page, so waiting for it first
    means the "not running" seen next is the new page's, not the old one's."""
    href = link.get_attribute("href")
    link.click()
    if href:
        expect(page).to_have_url(href)
    wait_for_app(page)


def login(page: Page, stack: Stack, username: str, password: str) -> None:
    """Sign in through the real login form, as a person would."""
    page.goto(stack.dashboard_url)
    wait_for_app(page)
    page.get_by_label("아이디").fill(username)
    page.get_by_label("비밀번호", exact=True).fill(password)
    page.get_by_role("button", name="로그인", exact=True).click()
    expect(page.get_by_role("button", name="로그아웃")).to_be_visible()
    wait_for_app(page)


def screenshot(page: Page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main area, so the viewport grows to fit it first."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name).strip('-')}.png"
    viewport = page.viewport_size or {"width": 1440, "height": 1000}
    content = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stSidebarContent]')]"
        ".map(e => e.scrollHeight), 0)"
    )
    page.set_viewport_size({"width": viewport["width"], "height": min(max(int(content), viewport["height"]), 6000)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(viewport)
    return path


def paid_payment(stack: Stack, *, email: str, name: str, phone: str) -> str:
    """A customer pays 50,000 KRW through our API and the sandbox checkout, as the app would; its imp_uid."""
    with httpx.Client(timeout=30) as http:
        order = http.post(
            f"{stack.api_url}/api/orders",
            json={"customer_email": email, "customer_name": name, "customer_phone": phone},
        )
        assert order.status_code == 201, order.text
        merchant_uid = order.json()["merchant_uid"]
        paid = http.post(
            f"{stack.sandbox_url}/sandbox/checkout",
            json={
                "merchant_uid": merchant_uid,
                "amount": "50000",
                "card_number": "4111-1111-1111-1111",
                "buyer_email": email,
                "buyer_name": name,
                "buyer_tel": phone,
            },
        ).json()
        imp_uid = str(paid["imp_uid"])
        completed = http.post(
            f"{stack.api_url}/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid}
        )
        assert completed.status_code == 200, completed.text
    return imp_uid
