"""Server-side dashboard sign-ins, on both databases: the cookie's token is exchanged once, only its
hash is stored, and a sign-in ends when idle, too old, signed out, disabled or ended by an admin."""

from __future__ import annotations

import time
from datetime import date

import pytest
from sqlalchemy import select

from services.auth import account_admin
from services.auth import accounts as users
from services.auth import dashboard_sessions as sessions
from services.auth.access import Actor
from services.core.errors import Forbidden
from services.core.models import DashboardSession, Role
from services.reporting import export_links
from services.reporting.exports import ExportFilters, ExportKind, ExportRequest
from services.runtime import Runtime

ADMIN = Actor("boss", Role.ADMIN)


@pytest.fixture
def people(runtime: Runtime) -> Runtime:
    users.create_user(runtime, username="boss", password="boss-password-1", role="admin", actor=None)
    users.create_user(runtime, username="kim", password="kim-password-1", role="operator", actor=None)
    return runtime


def signed_in(rt: Runtime, username: str = "kim", *, now: float | None = None) -> tuple[sessions.LiveSession, str]:
    live, code = sessions.start(rt, username=username, now=now)
    return live, sessions.redeem_handoff(rt, code, now=now)


def test_the_token_is_handed_over_once_and_only_its_hash_is_stored(people: Runtime) -> None:
    live, code = sessions.start(people, username="kim")
    token = sessions.redeem_handoff(people, code)
    assert len(token) >= 43  # 32 random bytes, base64url
    with pytest.raises(sessions.SessionEnded):
        sessions.redeem_handoff(people, code)  # a code works once
    with people.db.read() as session:
        row = session.scalars(select(DashboardSession)).one()
        stored = [str(value) for value in vars(row).values()]
    assert row.token_hash == sessions.hash_token(token)
    assert not any(token in value or code in value for value in stored)
    assert sessions.resolve(people, token=token).id == live.id
    assert sessions.resolve(people, session_id=live.id).username == "kim"
    with pytest.raises(sessions.SessionEnded):
        sessions.resolve(people, token=token + "x")


def test_a_handoff_code_expires(people: Runtime) -> None:
    now = time.time()
    _, code = sessions.start(people, username="kim", now=now)
    with pytest.raises(sessions.SessionEnded):
        sessions.redeem_handoff(people, code, now=now + sessions.HANDOFF_SECONDS + 1)


def test_every_sign_in_gets_a_new_id_and_token(people: Runtime) -> None:
    first, first_token = signed_in(people)
    second, second_token = signed_in(people)
    assert first.id != second.id and first_token != second_token


@pytest.mark.parametrize(
    ("signed_in_ago", "idle_for", "reason"),
    [
        (30 * 60, 30 * 60, None),
        (2 * 3600, 61 * 60, "idle"),
        (12 * 3600 + 30, 60, "lifetime"),  # busy all day: the absolute limit still ends it
    ],
)
def test_idle_and_absolute_lifetimes(
    people: Runtime, signed_in_ago: float, idle_for: float, reason: str | None
) -> None:
    now = time.time()
    start = now - signed_in_ago
    live, token = signed_in(people, now=start)
    # Actions every few minutes until `idle_for` ago.
    at = start
    while at < now - idle_for:
        sessions.resolve(people, token=token, now=at)
        at += 5 * 60
    sessions.resolve(people, token=token, now=now - idle_for)
    if reason is None:
        assert sessions.resolve(people, token=token, now=now).id == live.id
        return
    with pytest.raises(sessions.SessionEnded) as ended:
        sessions.resolve(people, token=token, now=now)
    assert ended.value.reason == reason
    with pytest.raises(sessions.SessionEnded) as again:  # ended for good, even if "active" again
        sessions.resolve(people, token=token, now=now)
    assert again.value.reason == reason


def test_sign_out_ends_it_for_every_holder_and_revokes_its_export_links(people: Runtime) -> None:
    live, token = signed_in(people)
    request = ExportRequest(
        kind=ExportKind.PAYMENTS,
        filters=ExportFilters(start=date(2026, 12, 1), end=date(2026, 12, 7)),
        actor=Actor("kim", Role.OPERATOR),
        masked=True,
        language="ko",
    )
    link = export_links.issue_link(people, request, sign_in=live.sign_in())
    assert sessions.end(people, live.id) is True
    assert sessions.end(people, live.id) is False
    with pytest.raises(sessions.SessionEnded) as ended:
        sessions.resolve(people, token=token)
    assert ended.value.reason == "signed_out"
    with pytest.raises(export_links.ExportLinkRevoked):
        export_links.redeem_link(people, link.token, kind="payments")


def test_a_disabled_user_is_signed_out_at_the_next_action(people: Runtime) -> None:
    _, token = signed_in(people)
    account_admin.set_active(people, username="kim", active=False, actor=ADMIN)
    with pytest.raises(sessions.SessionEnded) as ended:
        sessions.resolve(people, token=token)
    assert ended.value.reason == "disabled"
    account_admin.set_active(people, username="kim", active=True, actor=ADMIN)
    with pytest.raises(sessions.SessionEnded):  # enabling again does not bring the old sign-in back
        sessions.resolve(people, token=token)


def test_disabling_ends_every_sign_in_at_once_even_unused_ones(people: Runtime) -> None:
    """Disable, reset the password, enable again: a cookie nobody used meanwhile must not work again."""
    live, token = signed_in(people)
    account_admin.set_active(people, username="kim", active=False, actor=ADMIN)
    account_admin.set_active(people, username="kim", active=True, actor=ADMIN)
    with pytest.raises(sessions.SessionEnded) as ended:
        sessions.resolve(people, token=token)
    assert ended.value.reason == "disabled"
    with people.db.read() as session:
        assert session.get(DashboardSession, live.id).ended_reason == "disabled"


def test_a_password_reset_ends_every_sign_in_of_the_account(people: Runtime) -> None:
    _, token = signed_in(people)
    account_admin.reset_password(people, username="kim", new_password="kim-password-2", actor=ADMIN)
    with pytest.raises(sessions.SessionEnded) as ended:
        sessions.resolve(people, token=token)
    assert ended.value.reason == "revoked"


def test_a_role_change_keeps_the_sign_in_and_the_role_is_read_afresh(people: Runtime) -> None:
    live, token = signed_in(people)
    account_admin.change_role(people, username="kim", role="viewer", actor=ADMIN)
    assert sessions.resolve(people, token=token).id == live.id
    assert users.current_actor(people, "kim").role == Role.VIEWER


def test_an_admin_ends_a_users_sign_ins(people: Runtime) -> None:
    _, first = signed_in(people)
    _, second = signed_in(people)
    _, own = signed_in(people, "boss")
    assert sessions.live_counts(people, actor=ADMIN) == {"kim": 2, "boss": 1}
    with pytest.raises(Forbidden):
        sessions.end_user_sessions(people, username="boss", actor=Actor("kim", Role.OPERATOR))
    assert sessions.end_user_sessions(people, username="kim", actor=ADMIN) == 2
    for token in (first, second):
        with pytest.raises(sessions.SessionEnded) as ended:
            sessions.resolve(people, token=token)
        assert ended.value.reason == "revoked"
    assert sessions.resolve(people, token=own).username == "boss"
    assert sessions.live_counts(people, actor=ADMIN) == {"boss": 1}


def test_an_ended_sign_in_cannot_be_handed_over(people: Runtime) -> None:
    live, code = sessions.start(people, username="kim")
    sessions.end(people, live.id)
    with pytest.raises(sessions.SessionEnded):
        sessions.redeem_handoff(people, code)
