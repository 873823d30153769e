"""Review (access control and data exposure): failing tests reproducing defects found in review."""

from __future__ import annotations

import time
from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from services.runtime import Runtime
from services.users import create_user
from tests.pages.conftest import APP_FILE, APP_TIMEOUT
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
        at.session_state["auth_username"] = username
        at.session_state["auth_signed_in_at"] = at.session_state["auth_last_seen"] = time.time()
        at.run()
        at.switch_page("pages/admin.py")
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
