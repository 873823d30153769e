"""The app shell: sign-in, navigation by role, mode badge, language switch."""

from __future__ import annotations

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
    case="dashboard session left idle",
    outcome="expires; sign-in asked again",
)
def test_idle_session_expires(open_app: Callable[..., AppTest]) -> None:
    at = open_app("viewer")
    at.session_state["auth_last_seen"] = 0.0
    at.run()
    assert "auth_username" not in at.session_state
