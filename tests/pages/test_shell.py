"""The app shell: sign-in, navigation by role, mode badge, language switch."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from tests.pages.conftest import PASSWORDS


def test_signed_out_sees_only_the_login(open_app: Callable[..., AppTest]) -> None:
    at = open_app(None)
    assert not at.exception
    assert at.title[0].value == "체카 결제 운영 로그인"


def test_sign_in_with_password_then_wrong_password(open_app: Callable[..., AppTest]) -> None:
    at = open_app(None)
    at.text_input[0].input("operator")
    at.text_input[1].input(PASSWORDS["operator"])
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["auth_username"] == "operator"
    at = open_app(None)
    at.text_input[0].input("operator")
    at.text_input[1].input("wrong-password")
    at.button[0].click().run()
    assert "auth_username" not in at.session_state
    assert at.error[0].value.startswith("아이디 또는 비밀번호")


@pytest.mark.reliability(
    area="access",
    case="dashboard session left idle, or signed in longer than its lifetime",
    outcome="ends with a message saying which (SESSION_IDLE_MINUTES, SESSION_MAX_HOURS); sign-in asked again",
)
@pytest.mark.parametrize(
    ("signed_in_ago", "idle_for", "ended", "message"),
    [
        (30 * 60, 30 * 60, False, ""),  # idle half an hour: still live
        (11.9 * 3600, 59 * 60, False, ""),
        (2 * 3600, 61 * 60, True, "60분 동안 사용하지 않아"),
        (12.1 * 3600, 60, True, "최대 12시간"),  # busy all day: the lifetime still ends it
    ],
)
def test_sessions_end_when_idle_or_too_old(
    open_app: Callable[..., AppTest], signed_in_ago: float, idle_for: float, ended: bool, message: str
) -> None:
    at = open_app("operator")
    now = time.time()
    at.session_state["auth_signed_in_at"] = now - signed_in_ago
    at.session_state["auth_last_seen"] = now - idle_for
    at.run()
    assert ("auth_username" not in at.session_state) == ended
    if ended:  # the login page says why
        assert any(message in w.value for w in at.warning), [w.value for w in at.warning]
    else:
        assert at.session_state["auth_last_seen"] >= now  # an action keeps it alive


def test_a_session_not_made_by_sign_in_is_not_accepted(open_app: Callable[..., AppTest]) -> None:
    at = open_app("admin")
    del at.session_state["auth_signed_in_at"]
    at.run()
    assert "auth_username" not in at.session_state
