"""Fixtures for Streamlit AppTest page tests: a migrated SQLite database, the sandbox, users of
each role, and an `app` factory that opens app.py signed in as one of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services.auth.accounts import create_user
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime

PASSWORDS = {"admin": "admin-password-1", "operator": "operator-password-1", "viewer": "viewer-password-1"}
APP_TIMEOUT = 60
APP_FILE = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def dashboard_runtime(tmp_path: Path, sandbox: SandboxControl, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A migrated SQLite database with one user per role; the dashboard reads it via the env."""
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PORTONE_MODE", "sandbox")
    monkeypatch.setenv("PORTONE_API_URL", sandbox.url)
    rt = make_runtime(database_url=url, portone_api_url=sandbox.url)
    for role, password in PASSWORDS.items():
        create_user(rt, username=role, password=password, role=role, actor=None)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def open_app(dashboard_runtime: Runtime) -> Callable[..., AppTest]:
    """`open_app(role)` runs app.py signed in as that role (None: signed out)."""

    def open_as(role: str | None, *, lang: str = "ko") -> AppTest:
        at = AppTest.from_file(APP_FILE, default_timeout=APP_TIMEOUT)
        at.session_state["lang"] = lang
        if role is not None:
            at.session_state["auth_username"] = role
            at.session_state["auth_signed_in_at"] = at.session_state["auth_last_seen"] = time.time()
        return at.run()

    return open_as
