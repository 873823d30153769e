"""The app shell: sign-in, navigation by role, mode badge, language switch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from services.runtime import Runtime
from tests.pages.conftest import APP_FILE, APP_TIMEOUT, PASSWORDS, SESSION_KEY, age_sign_in, signed_in


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
    assert signed_in(at)
    assert at.button(key="sign_out")  # the signed-in shell
    at = open_app(None)
    at.text_input[0].input("operator")
    at.text_input[1].input("wrong-password")
    at.button[0].click().run()
    assert not signed_in(at)
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
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    signed_in_ago: float,
    idle_for: float,
    ended: bool,
    message: str,
) -> None:
    at = open_app("operator")
    age_sign_in(dashboard_runtime, at, signed_in_ago=signed_in_ago, idle_for=idle_for)
    at.run()
    assert signed_in(at) != ended
    if ended:  # the login page says why
        assert any(message in w.value for w in at.warning), [w.value for w in at.warning]
    else:
        assert at.button(key="sign_out")


def test_a_session_not_made_by_sign_in_is_not_accepted(open_app: Callable[..., AppTest]) -> None:
    at = open_app(None)
    at.session_state[SESSION_KEY] = "made-up-session-id"
    at.run()
    assert not signed_in(at)
    assert not [b for b in at.button if b.key == "sign_out"]
    assert at.title[0].value == "체카 결제 운영 로그인"
    assert not at.warning  # no "signed out for inactivity" for someone who never signed in


def test_sign_out_ends_the_sign_in_for_every_browser_session(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime
) -> None:
    at = open_app("operator")
    other = AppTest.from_file(APP_FILE, default_timeout=APP_TIMEOUT)
    other.session_state[SESSION_KEY] = at.session_state[SESSION_KEY]  # the same sign-in, another tab
    other.run()
    assert other.button(key="sign_out")
    at.button(key="sign_out").click().run()
    assert not signed_in(at)
    other.run()
    assert not signed_in(other)
    assert any("로그아웃되었습니다" in w.value for w in other.warning), [w.value for w in other.warning]
