"""Sign-in and the role gate. Every page calls `gate(permission)` first: it checks on the
server, re-reading the user's role each run, so hiding a button is never the only guard.

A sign-in lives in the database (services.auth.dashboard_sessions). The browser holds its token in
an HttpOnly cookie set by the dashboard's server (dashboard/session_cookie.py), read here from the
websocket's handshake (`st.context.cookies`): a reload, a new tab or another dashboard process
finds the same sign-in. The browser session that signed in also remembers the sign-in's id, so it
stays signed in before the cookie is set (and where no cookie exists, as in AppTest)."""

from __future__ import annotations

import json

import streamlit as st

from dashboard.format import plain
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from dashboard.session_cookie import COOKIE, END_PATH, START_PATH, same_origin
from services.auth import accounts as users
from services.auth import dashboard_sessions
from services.auth.access import Actor, Permission
from services.auth.dashboard_sessions import LiveSession, SessionEnded
from services.auth.sessions import SessionEnd, SessionPolicy, SignIn
from services.core.errors import Forbidden

_SESSION = "auth_session_id"  # the sign-in this browser session made (its public id, not the token)
_HANDOFF = "auth_handoff"  # the one-time code the page posts to the cookie route, once
_FORGET = "auth_forget_cookie"  # after sign-out: ask the server to clear the cookie, once
_IGNORED = "auth_ended_cookie"  # the hash of a cookie token known to have ended: said once, not looked up again


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError):
        return False
    except Exception:  # noqa: BLE001 - a malformed secrets file means no OIDC, not a crash
        return False


def sign_in(actor: Actor) -> None:
    """A new sign-in (new id, new token: nothing from before carries over) for an authenticated actor."""
    live, code = dashboard_sessions.start(get_runtime(), username=actor.username)
    st.session_state[_SESSION] = live.id
    st.session_state[_HANDOFF] = code
    st.session_state.pop(_FORGET, None)


def _cookie_token() -> str | None:
    """The sign-in cookie, only from a page on the dashboard's own origin. Streamlit lets in a websocket
    from any port of an allowed host name and the browser sends the cookie along, so a page served on
    another port (the API, the sandbox, any internal tool) could otherwise drive this sign-in."""
    try:
        token = st.context.cookies.get(COOKIE)
        headers = st.context.headers
        origin, host = headers.get("Origin"), headers.get("Host")
    except Exception:  # noqa: BLE001 - no browser connection (e.g. a script run in tests): no cookie
        return None
    if not same_origin(origin, host):
        return None
    return token if isinstance(token, str) and token else None


def _say_why(reason: str) -> None:
    policy = SessionPolicy.from_settings(get_runtime().settings)
    words = {
        SessionEnd.IDLE: lambda: t("login.expired_idle", minutes=f"{policy.idle_seconds / 60:g}"),
        SessionEnd.LIFETIME: lambda: t("login.expired_lifetime", hours=f"{policy.lifetime_seconds / 3600:g}"),
        SessionEnd.SIGNED_OUT: lambda: t("login.ended_signed_out"),
        SessionEnd.REVOKED: lambda: t("login.ended_revoked"),
    }
    say = words.get(reason)  # type: ignore[call-overload]
    if say is not None:
        st.session_state["auth_message"] = say()
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def _live_session() -> LiveSession | None:
    """This browser's live sign-in, or None; an ended one is said why once, then forgotten.
    With neither a sign-in nor a cookie, nothing is asked of the runtime (the sign-in page shows
    even when the settings are refused)."""
    session_id = st.session_state.get(_SESSION)
    if session_id:
        try:
            return dashboard_sessions.resolve(get_runtime(), session_id=str(session_id))
        except SessionEnded as ended:
            st.session_state.pop(_SESSION, None)
            st.session_state.pop(_HANDOFF, None)
            _say_why(ended.reason)
    token = _cookie_token()
    if token and dashboard_sessions.hash_token(token) != st.session_state.get(_IGNORED):
        try:
            return dashboard_sessions.resolve(get_runtime(), token=token)
        except SessionEnded as ended:
            st.session_state[_IGNORED] = dashboard_sessions.hash_token(token)
            if not session_id:  # not said a moment ago for the same sign-in
                _say_why(ended.reason)
    return None


def sign_out() -> None:
    """End the sign-in in every tab and dashboard process; the export links it made stop working."""
    live = _live_session()
    if live is not None:
        dashboard_sessions.end(get_runtime(), live.id)
    token = _cookie_token()
    if token:
        st.session_state[_IGNORED] = dashboard_sessions.hash_token(token)
    for key in (_SESSION, _HANDOFF, "auth_message"):
        st.session_state.pop(key, None)
    st.session_state[_FORGET] = True
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def current_actor() -> Actor | None:
    """The signed-in actor, or None (never signed in, signed out, idle or signed in too long,
    ended by an admin, account disabled). The role is read afresh on every run."""
    live = _live_session()
    if live is None and oidc_configured() and getattr(st.user, "is_logged_in", False):
        email = str(st.user.get("email") or "")
        if st.user.get("email_verified") is not True:
            # The e-mail claim names the account; an address the IdP did not verify is anyone's.
            st.session_state["auth_message"] = t("login.oidc_unverified", email=plain(email))
            return None
        try:
            actor = users.current_actor(get_runtime(), email)
        except Forbidden:
            st.session_state["auth_message"] = t("login.oidc_unknown", email=plain(email))
            return None
        sign_in(actor)
        return actor
    if live is None:
        return None
    try:
        return users.current_actor(get_runtime(), live.username)
    except Forbidden:
        dashboard_sessions.end(get_runtime(), live.id, reason=SessionEnd.DISABLED)
        return None


def current_sign_in() -> SignIn | None:
    """This browser's sign-in, for binding what the server hands out (export links) to it.
    Call after `gate`; None when signed out."""
    live = _live_session()
    return None if live is None else live.sign_in()


def send_cookie_requests() -> None:
    """After a sign-in, have the browser exchange the one-time code for the HttpOnly cookie; after
    a sign-out, have it drop the cookie. Called by app.py on every run; does nothing most runs."""
    code = st.session_state.pop(_HANDOFF, None)
    if code:
        _post(START_PATH, {"code": str(code)})
    if st.session_state.pop(_FORGET, None):
        _post(END_PATH, {})


def _post(path: str, body: dict[str, str]) -> None:
    # json.dumps of our own values; "</" escaped so nothing can close the script element.
    payload = json.dumps(body).replace("</", "<\\/")
    st.html(
        f"<script>fetch({json.dumps(path)}, {{method: 'POST', credentials: 'same-origin', "
        f"headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({payload})}});</script>",
        unsafe_allow_javascript=True,
    )


def holding(permission: Permission) -> Actor | None:
    """The signed-in actor if they hold `permission` now, else None. Dialogs ask on each of their own
    runs: Streamlit reruns only the dialog when one of its widgets is used, so the page's gate does not
    run again, and the actor the page saw may since have been demoted, disabled or signed out."""
    actor = current_actor()
    return actor if actor is not None and actor.can(permission) else None


def gate(permission: Permission = Permission.VIEW) -> Actor:
    """Stop the page unless the signed-in actor holds `permission`."""
    actor = current_actor()
    if actor is None:
        st.warning(st.session_state.pop("auth_message", None) or t("login.expired"))
        st.stop()
    if not actor.can(permission):
        st.error(t("app.forbidden", role=t(f"role.{actor.role}")))
        st.stop()
    return actor  # type: ignore[return-value]
