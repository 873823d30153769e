"""What the sign-in page and the admin page show: no links in user names, no secrets, only verified e-mail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services.auth.accounts import create_user
from services.runtime import Runtime
from tests.pages.conftest import APP_FILE, APP_TIMEOUT, sign_in_state, signed_in
from tests.pages.test_outside_text_is_inert import live_markdown

# Allowed by users._USERNAME (letters, digits, . _ @ -), and each an autolink to GitHub-flavoured
# Markdown: a bare www. address and an e-mail address (the form OIDC sign-ins use as user names).
LINKED_USERNAMES = ("www.evil.example", "help@evil.example")


def test_user_names_render_no_link_on_the_admin_page_or_the_sidebar(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime
) -> None:
    for username in LINKED_USERNAMES:
        create_user(dashboard_runtime, username=username, password="linked-password-1", role="admin", actor=None)
    found = []
    for username in LINKED_USERNAMES:
        at = AppTest.from_file(APP_FILE, default_timeout=APP_TIMEOUT)
        at.session_state["lang"] = "en"
        sign_in_state(at, dashboard_runtime, username)
        at.run()
        at.switch_page("views/admin.py")
        at.run()
        assert not at.exception, at.exception
        at.selectbox(key="admin_edit_user").select(username)
        at.run()
        at.button(key="admin_reset_submit")  # the form is there
        at.text_input(key="admin_reset_password_value").input("another-password-1")
        at.button(key="admin_reset_submit").click()
        at.run()
        assert not at.exception, at.exception
        found += [f"{username}: {text}" for text in live_markdown(at)]
        found += [f"{username}: {text}" for text in _autolinks(at, username)]
    assert found == [], "\n".join(found)


def _autolinks(at: AppTest, username: str) -> list[str]:
    """Markdown strings holding the user name unescaped (GFM autolinks www. and e-mail addresses)."""
    texts = [c.value for c in at.sidebar.caption] + [m.value for m in at.success] + [m.value for m in at.caption]
    return [text for text in texts if username in text]


def test_a_refused_configuration_shows_no_secret_on_the_sign_in_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """PORTONE_MODE forgotten on a server holding real secrets and PortOne's real address: the
    dashboard refuses to run, and anyone submitting the sign-in form must not be shown (nor the log
    be given) any part of a secret from the environment; pydantic's error echoes the input values."""
    internal_token = "real-internal-api-token-5f0c2b9e7a"
    for name in ("PORTONE_MODE", "PORTONE_V2_API_URL", "EXPORT_LINK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'refused.db'}")
    monkeypatch.setenv("PORTONE_API_URL", "https://api.iamport.kr")
    monkeypatch.setenv("INTERNAL_API_TOKEN", internal_token)
    at = AppTest.from_file(APP_FILE, default_timeout=APP_TIMEOUT)
    at.session_state["lang"] = "en"
    at.run()
    at.text_input[0].input("someone")
    at.text_input[1].input("any-password-123")
    at.button[0].click()
    at.run()
    shown = " ".join(str(e.value) + " " + " ".join(getattr(e.proto, "stack_trace", [])) for e in at.exception)
    assert at.exception, "the dashboard ran on a refused configuration"
    leaked = [
        internal_token[i : i + 12] for i in range(len(internal_token) - 11) if internal_token[i : i + 12] in shown
    ]
    assert leaked == [], shown


def test_an_oidc_sign_in_with_an_unverified_email_is_not_the_account_of_that_email(
    dashboard_runtime: Runtime,
) -> None:
    """With OIDC, the IdP's `email` claim names the account. Many IdPs let a person put any address
    on a new account without proving it (`email_verified: false`); such a claim must not sign in as
    the admin whose user name is that address."""
    create_user(dashboard_runtime, username="boss@corp.example", password="boss-password-1", role="admin", actor=None)
    at = AppTest.from_file(APP_FILE, default_timeout=APP_TIMEOUT)
    at.session_state["lang"] = "en"
    at.secrets["auth"] = {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "review-cookie-secret-0123456789",
        "client_id": "chekar",
        "client_secret": "review-client-secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    at.user = {"is_logged_in": True, "email": "boss@corp.example", "email_verified": False, "name": "Mallory"}
    at.run()
    assert not at.exception, at.exception
    assert not signed_in(at), "signed in on an unverified e-mail claim"
