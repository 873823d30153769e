"""Fixtures for Streamlit AppTest page tests: a migrated SQLite database, the sandbox, users of
each role, and an `app` factory that opens app.py signed in as one of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from streamlit.testing.v1 import AppTest

from services.auth import dashboard_sessions
from services.auth.accounts import create_user
from services.core.models import DashboardSession, utcnow
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
            sign_in_state(at, dashboard_runtime, role)
        return at.run()

    return open_as


SESSION_KEY = "auth_session_id"


def sign_in_state(at: AppTest, rt: Runtime, username: str) -> str:
    """A fresh server-side sign-in of `username` held by this AppTest's browser session, as the
    sign-in form leaves it (AppTest has no cookies: the session remembers the sign-in's id)."""
    live, _code = dashboard_sessions.start(rt, username=username)
    at.session_state[SESSION_KEY] = live.id
    return live.id


def signed_in(at: AppTest) -> bool:
    return SESSION_KEY in at.session_state


def age_sign_in(rt: Runtime, at: AppTest, *, signed_in_ago: float, idle_for: float) -> None:
    """Move the AppTest's sign-in back in time in the database (signed in and last seen that long ago)."""
    now = utcnow()
    with rt.db.write() as session:
        session.execute(
            update(DashboardSession)
            .where(DashboardSession.id == at.session_state[SESSION_KEY])
            .values(created_at=now - timedelta(seconds=signed_in_ago), last_seen_at=now - timedelta(seconds=idle_for))
        )
