"""Administration: users and roles, the audit log, and system health (mode, database, PortOne, scheduler)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
import streamlit as st

from dashboard.auth import gate
from dashboard.format import kst, plain, scheduled_run_line
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.audit import reader as audit_log
from services.auth import account_admin as user_admin
from services.auth import accounts as users
from services.auth import dashboard_sessions
from services.auth.access import Permission
from services.core.errors import Conflict, Forbidden, InvalidRequest, NotFound, PaymentsError
from services.core.models import Role, User
from services.reconciliation.schedule import ScheduleState
from services.system import health

actor = gate(Permission.MANAGE_USERS)
rt = get_runtime()
ROLES = [str(role) for role in Role]
_FLASH, _CURSORS, _FILTER, _HEALTH = "admin_flash", "admin_audit_cursors", "admin_audit_applied", "admin_health"
PAGE_SIZE = 50


def _roles() -> dict[str, str]:
    """Role names in the operator's language -> roles (the choices are the translated names)."""
    return {t(f"role.{role}"): role for role in ROLES}


def _explain(exc: PaymentsError) -> str:
    if isinstance(exc, InvalidRequest):
        return t("admin.err_invalid", detail=plain(exc))
    if isinstance(exc, Conflict):
        return t("admin.err_exists")
    if isinstance(exc, NotFound):
        return t("admin.err_not_found")
    if isinstance(exc, Forbidden):
        return t("admin.err_forbidden")
    return t("app.error_generic", message=plain(exc))


def _act(action: Callable[[], object], success: str) -> None:
    """Run a user change; on success keep the message for after the rerun that shows the new state."""
    try:
        action()
    except PaymentsError as exc:
        st.error(_explain(exc))
    else:
        st.session_state[_FLASH] = success
        st.rerun()


def _users() -> None:
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(flash)
    accounts = users.list_users(rt, actor=actor)
    st.subheader(t("admin.users_heading"))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    t("admin.col_username"): u.username,
                    t("admin.col_display_name"): u.display_name or "",
                    t("admin.col_role"): t(f"role.{u.role}"),
                    t("admin.col_active"): t("admin.active_yes") if u.active else t("admin.active_no"),
                    t("admin.col_last_login"): kst(u.last_login_at),
                    t("admin.col_locked"): kst(u.locked_until) if u.locked_until else "",
                }
                for u in accounts
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    add, edit = st.columns(2)
    with add:
        _add_user()
    with edit:
        _edit_user({u.username: u for u in accounts})


def _add_user() -> None:
    st.subheader(t("admin.add_heading"))
    with st.form("admin_add_user", clear_on_submit=False):
        username = st.text_input(t("admin.username"), key="admin_new_username")
        display_name = st.text_input(t("admin.display_name"), key="admin_new_display_name")
        role = _roles()[st.selectbox(t("admin.role"), list(_roles()), key="admin_new_role")]
        password = st.text_input(t("admin.password"), type="password", key="admin_new_password")
        again = st.text_input(t("admin.password_again"), type="password", key="admin_new_password_again")
        st.caption(t("admin.rules", min=users.MIN_PASSWORD_LENGTH))
        submitted = st.form_submit_button(t("admin.add_submit"), type="primary", key="admin_add_submit")
    if not submitted:
        return
    if password != again:
        st.error(t("admin.password_mismatch"))
        return
    _act(
        lambda: users.create_user(
            rt, username=username, password=password, role=role, display_name=display_name.strip() or None, actor=actor
        ),
        t("admin.added", username=plain(username.strip()), role=t(f"role.{role}")),
    )


def _edit_user(accounts: dict[str, User]) -> None:
    st.subheader(t("admin.edit_heading"))
    if not accounts:
        st.caption(t("admin.no_users"))
        return
    username = st.selectbox(t("admin.edit_user"), list(accounts), key="admin_edit_user")
    account = accounts[username]
    current_role, active = str(account.role), bool(account.active)
    role = _roles()[
        st.selectbox(
            t("admin.edit_role"), list(_roles()), index=ROLES.index(current_role), key=f"admin_edit_role_{username}"
        )
    ]
    save, toggle = st.columns(2)
    if save.button(t("admin.save_role"), key="admin_save_role", disabled=role == current_role):
        _act(
            lambda: user_admin.change_role(rt, username=username, role=role, actor=actor),
            t("admin.role_saved", username=plain(username), role=t(f"role.{role}")),
        )
    if toggle.button(t("admin.disable") if active else t("admin.enable"), key="admin_toggle_active"):
        _act(
            lambda: user_admin.set_active(rt, username=username, active=not active, actor=actor),
            t("admin.disabled" if active else "admin.enabled", username=plain(username)),
        )
    live = dashboard_sessions.live_counts(rt, actor=actor).get(username, 0)
    st.caption(t("admin.sessions_live", count=live))
    if st.button(t("admin.end_sessions"), key="admin_end_sessions", disabled=live == 0):
        _act(
            lambda: dashboard_sessions.end_user_sessions(rt, username=username, actor=actor),
            t("admin.sessions_ended", username=plain(username), count=live),
        )
    with st.form("admin_reset_password"):
        st.markdown(f"**{t('admin.reset_heading')}**")
        new_password = st.text_input(t("admin.new_password"), type="password", key="admin_reset_password_value")
        reset = st.form_submit_button(t("admin.reset_submit"), key="admin_reset_submit")
    if reset:
        _act(
            lambda: user_admin.reset_password(rt, username=username, new_password=new_password, actor=actor),
            t("admin.reset_done", username=plain(username)),
        )


@st.cache_data(ttl=60, show_spinner=False)
def _known_actions(database_url: str) -> list[str]:  # noqa: ARG001 - the cache key
    """The filter's choices: a DISTINCT over the whole log, so shared for a minute."""
    return audit_log.known_actions(rt, actor=actor)


def _audit() -> None:
    st.subheader(t("admin.audit_heading"))
    if not actor.can(Permission.VIEW_AUDIT):
        st.info(t("admin.audit_forbidden"))
        return
    all_actions = t("admin.filter_all")
    with st.form("admin_audit_filter"):
        who, what, target = st.columns(3)
        who_value = who.text_input(t("admin.filter_actor"), key="admin_audit_actor")
        action = what.selectbox(
            t("admin.filter_action"), [all_actions, *_known_actions(rt.db.url)], key="admin_audit_action"
        )
        target_value = target.text_input(t("admin.filter_target"), key="admin_audit_target")
        since_col, until_col = st.columns(2)
        since = since_col.date_input(t("admin.filter_since"), value=None, key="admin_audit_since")
        until = until_col.date_input(t("admin.filter_until"), value=None, key="admin_audit_until")
        st.form_submit_button(t("admin.filter_apply"), key="admin_audit_apply")
    filters = audit_log.AuditFilter(
        actor=who_value or None,
        action=None if action == all_actions else action,
        target=target_value or None,
        since=since,  # type: ignore[arg-type]
        until=until,  # type: ignore[arg-type]
    )
    if st.session_state.get(_FILTER) != filters:  # new filters: back to the newest page
        st.session_state[_FILTER] = filters
        st.session_state[_CURSORS] = []
    cursors: list[int] = st.session_state[_CURSORS]
    try:
        page = audit_log.list_entries(
            rt, actor=actor, filters=filters, before_id=cursors[-1] if cursors else None, limit=PAGE_SIZE
        )
    except PaymentsError as exc:
        st.error(_explain(exc))
        return
    if not page.rows:
        st.info(t("admin.audit_empty"))
    else:
        st.caption(t("admin.audit_page", page=len(cursors) + 1, count=len(page.rows)))
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        t("admin.col_at"): kst(row.at, seconds=True),
                        t("admin.col_actor"): row.actor,
                        t("admin.col_action"): row.action,
                        t("admin.col_target"): row.target or "",
                        t("admin.col_detail"): json.dumps(row.detail, ensure_ascii=False, default=str)
                        if row.detail
                        else "",
                    }
                    for row in page.rows
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    first, previous, following = st.columns(3)
    if cursors and first.button(t("admin.first_page"), key="admin_audit_first"):
        st.session_state[_CURSORS] = []
        st.rerun()
    if cursors and previous.button(t("admin.previous_page"), key="admin_audit_previous"):
        st.session_state[_CURSORS] = cursors[:-1]
        st.rerun()
    if page.next_before_id is not None and following.button(t("admin.next_page"), key="admin_audit_next"):
        st.session_state[_CURSORS] = [*cursors, page.next_before_id]
        st.rerun()


def _latency(ms: float | None) -> str:
    return t("admin.latency", ms=f"{ms:,.0f}") if ms is not None else "—"


def _health() -> None:
    """The same checks as the API's /readyz: database and schema, PortOne (V1; V2 when in use), the
    scheduled reconciliation's last run and staleness."""
    st.subheader(t("admin.health_heading"))
    mode = rt.settings.portone_mode
    color = {"sandbox": "blue", "test": "orange", "live": "red"}[mode]
    st.markdown(f"#### {t('admin.mode')}: :{color}-badge[{t('app.mode_' + mode)}]")
    if mode == "live":
        st.error(t("admin.live_banner"))
    if st.button(t("admin.recheck"), key="admin_health_recheck") or _HEALTH not in st.session_state:
        st.session_state[_HEALTH] = health.check(rt, actor=actor)
    report: health.Health = st.session_state[_HEALTH]
    st.caption(t("admin.checked_at", time=kst(report.checked_at, seconds=True)))
    db, portone, schedule = st.columns(3)
    with db.container(border=True):
        _database(report.database)
    with portone.container(border=True):
        _portone(report.portone)
        if report.portone_v2 is not None:
            st.divider()
            _portone(report.portone_v2)
    with schedule.container(border=True):
        _scheduler(report.schedule)


def _state(ok: bool) -> str:
    return f":green-badge[{t('admin.ok')}]" if ok else f":red-badge[{t('admin.down')}]"


def _database(report: health.DatabaseHealth) -> None:
    st.markdown(f"**{t('admin.database')}** {_state(report.ok and report.cannot_write is None)}")
    if report.cannot_write is not None:
        st.error(t("admin.database_cannot_write", detail=plain(report.cannot_write)))
    if not report.reachable:
        st.error(t("admin.database_down", error=plain(report.error)))
        return
    head = ", ".join(report.heads) or t("admin.none")
    st.caption(
        t(
            "admin.database_detail",
            backend=report.backend,
            revision=plain(report.revision) if report.revision else t("admin.none"),
            head=head,
            latency=_latency(report.latency_ms),
        )
    )
    if report.schema == "behind":
        st.warning(t("admin.database_not_head"))
    elif report.schema == "ahead":
        st.error(t("admin.database_ahead"))


def _portone(report: health.PortOneHealth) -> None:
    v2 = report.api == "v2"
    st.markdown(f"**{t('admin.portone_v2' if v2 else 'admin.portone')}** {_state(report.ok)}")
    detail = "admin.portone_v2_detail" if v2 else "admin.portone_detail"
    st.caption(t(detail, url=plain(report.api_url), latency=_latency(report.latency_ms)))
    if report.not_portone:
        st.error(t("admin.portone_not_portone"))
    elif report.reachable and not report.authorized:
        refused = "admin.portone_v2_store_refused" if report.refused == "store" else "admin.portone_unauthorized"
        if v2 and report.refused != "store":
            refused = "admin.portone_v2_unauthorized"
        st.error(t(refused, error=plain(report.error)))
    elif not report.reachable:
        st.error(t("admin.portone_down", error=plain(report.error)))


def _scheduler(state: ScheduleState | None) -> None:
    # Never ran yet and not overdue: waiting, neither healthy nor down.
    waiting = state is not None and state.last_run is None and not state.stale
    badge = f":gray-badge[{t('admin.waiting')}]" if waiting else _state(state is not None and not state.stale)
    st.markdown(f"**{t('admin.scheduler')}** {badge}")
    if state is None:
        st.error(t("admin.scheduler_unknown"))
        return
    st.caption(scheduled_run_line(state))
    if state.last_finished_at is not None:
        st.caption(t("admin.scheduler_last_finished", time=kst(state.last_finished_at)))
    if state.stale:
        st.error(t("reconcile.schedule_stale", minutes=state.stale_after.total_seconds() / 60))


st.title(t("admin.title"))
users_tab, audit_tab, health_tab = st.tabs([t("admin.tab_users"), t("admin.tab_audit"), t("admin.tab_health")])
with users_tab:
    _users()
with audit_tab:
    _audit()
with health_tab:
    _health()
