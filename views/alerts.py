"""Alerts: differences between our records and PortOne's; look at one beside its payment, and
ask PortOne again, acknowledge or resolve it with a note (operators and admins)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard.auth import gate
from dashboard.format import KST, amounts_in, badge, kst, money, payment_state, plain, scheduled_run_line, status_label
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.alerts import desk as alert_desk
from services.auth.access import Permission
from services.core.errors import Conflict, GatewayError, InvalidRequest, NotFound, PaymentsError
from services.core.job_lock import JobBusy
from services.reconciliation import engine as reconcile
from services.reconciliation import runs as reconcile_runs
from services.reconciliation import schedule as reconcile_schedule

actor = gate(Permission.VIEW)
rt = get_runtime()
can_handle = actor.can(Permission.HANDLE_ALERTS)
STATUSES = ("open", "acknowledged", "resolved")
PAGE_SIZE = 25


def _kind(kind: str) -> str:
    return t(f"alerts.kind_{kind}")


def _severity(severity: str) -> str:
    return t(f"alerts.severity_{severity}")


def _flash() -> None:
    message = st.session_state.pop("alerts_flash", None)
    if message:
        level, text = message
        (st.success if level == "success" else st.warning)(text)


def _filters() -> tuple[str, str | None, str | None]:
    counts = alert_desk.status_counts(rt, actor=actor)
    status_labels = {s: t("alerts.status_option", label=status_label(s), count=f"{counts[s]:,}") for s in STATUSES}
    status = st.radio(
        t("alerts.status_filter"), STATUSES, format_func=status_labels.__getitem__, horizontal=True, key="alerts_status"
    )
    left, right = st.columns(2)
    kinds = ["", *alert_desk.kinds()]
    kind_labels = {k: _kind(k) if k else t("alerts.all") for k in kinds}
    kind = left.selectbox(t("alerts.kind_filter"), kinds, format_func=kind_labels.__getitem__, key="alerts_kind")
    severities = ["", *alert_desk.SEVERITIES]
    severity_labels = {s: _severity(s) if s else t("alerts.all") for s in severities}
    severity = right.selectbox(
        t("alerts.severity_filter"), severities, format_func=severity_labels.__getitem__, key="alerts_severity"
    )
    return status, kind or None, severity or None


def _table(rows: list[alert_desk.AlertRow]) -> None:
    def handler(row: alert_desk.AlertRow) -> str:
        return row.resolved_by or row.acknowledged_by or ""

    frame = pd.DataFrame(
        [
            {
                t("alerts.col_id"): f"#{row.id}",
                t("alerts.col_created"): kst(row.created_at),
                t("alerts.col_severity"): _severity(row.severity),
                t("alerts.col_kind"): _kind(row.kind),
                t("alerts.col_payment"): row.imp_uid or t("alerts.no_payment"),
                t("alerts.col_db"): amounts_in(row.db_value),
                t("alerts.col_portone"): amounts_in(row.portone_value),
                t("alerts.col_status"): status_label(row.status),
                t("alerts.col_handler"): handler(row),
            }
            for row in rows
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")


def _pager(page: alert_desk.AlertPage) -> None:
    caption, prev, nxt = st.columns([4, 1, 1])
    caption.caption(t("alerts.page_caption", total=page.total, page=page.page, pages=page.pages))
    if prev.button(t("alerts.prev"), key="alerts_prev", disabled=page.page <= 1):
        st.session_state["alerts_page"] = page.page - 1
        st.rerun()
    if nxt.button(t("alerts.next"), key="alerts_next", disabled=page.page >= page.pages):
        st.session_state["alerts_page"] = page.page + 1
        st.rerun()


def _payment(detail: alert_desk.AlertDetail) -> None:
    st.markdown(f"**{t('alerts.payment_heading')}**")
    p = detail.payment
    if p is None:
        st.caption(t("alerts.payment_missing"))
        return
    order = money(p.order_amount, p.order_currency) if p.order_amount is not None and p.order_currency else "—"
    state = badge(payment_state(p.status, p.cancel_amount, p.verified))
    amount, refunded = money(p.amount, p.currency), money(p.cancel_amount, p.currency)
    st.markdown(t("alerts.payment_line", status=state, amount=amount, refunded=refunded, order=order))
    st.caption(
        f"{plain(p.imp_uid)} · {plain(p.merchant_uid)} · "
        + t("alerts.payment_synced", time=kst(p.synced_at, seconds=True))
    )
    if st.button(t("alerts.open_payment"), key="alerts_open_payment"):
        st.session_state["detail_imp_uid"] = p.imp_uid
        st.session_state["payment_detail.imp_uid"] = p.imp_uid  # the key the detail page reads
        st.switch_page("views/payment_detail.py")


def _run(action: Callable[[], str], *, invalid_message: str | None = None) -> None:
    """Run a handling action; a success (or a lost race) is shown after reloading the list."""
    try:
        message = action()
    except InvalidRequest as exc:
        st.error(invalid_message or t("app.error_generic", message=plain(exc)))
    except Conflict:
        st.session_state["alerts_flash"] = ("warning", t("alerts.conflict"))
        st.rerun()
    except GatewayError:
        st.error(t("app.unavailable"))
    except PaymentsError as exc:
        st.error(t("app.error_generic", message=plain(exc)))
    else:
        st.session_state["alerts_flash"] = ("success", message)
        st.session_state.pop("alerts_note", None)
        st.rerun()


def _resync(alert_id: int) -> str:
    with st.spinner(t("alerts.resyncing")):
        result = alert_desk.resync(rt, actor=actor, alert_id=alert_id)
    status = status_label(result.portone_status) if result.portone_status else "—"
    key = {"resolved": "resynced_resolved", "still_different": "resynced_still", "not_at_portone": "resynced_missing"}
    return t(f"alerts.{key[result.outcome]}", status=plain(status))


def _acknowledge(alert_id: int) -> str:
    alert_desk.acknowledge(rt, actor=actor, alert_id=alert_id)
    return t("alerts.acknowledged_done", id=alert_id)


def _resolve(alert_id: int, note: str) -> str:
    alert_desk.resolve(rt, actor=actor, alert_id=alert_id, note=note)
    return t("alerts.resolved_done", id=alert_id)


def _fail_refund(alert_id: int, note: str) -> str:
    with st.spinner(t("alerts.resyncing")):
        alert_desk.fail_requested_refunds(rt, actor=actor, alert_id=alert_id, note=note)
    return t("alerts.fail_refund_done", id=alert_id)


def _actions(alert: alert_desk.AlertRow) -> None:
    if not can_handle:
        st.caption(t("alerts.viewer_note"))
        return
    if alert.status == "resolved":
        return
    resync, acknowledge = st.columns(2)
    if resync.button(t("alerts.resync"), help=t("alerts.resync_help"), key="alerts_resync"):
        _run(lambda: _resync(alert.id))
    if alert.status == "open" and acknowledge.button(t("alerts.acknowledge"), key="alerts_acknowledge"):
        _run(lambda: _acknowledge(alert.id))
    note = st.text_area(t("alerts.note"), placeholder=t("alerts.note_placeholder"), key="alerts_note")
    if st.button(t("alerts.resolve"), type="primary", key="alerts_resolve"):
        _run(lambda: _resolve(alert.id, note), invalid_message=t("alerts.note_required"))
    if alert.kind == "refund_cancel_overdue" and st.button(
        t("alerts.fail_refund"), help=t("alerts.fail_refund_help"), key="alerts_fail_refund"
    ):
        _run(lambda: _fail_refund(alert.id, note), invalid_message=t("alerts.note_required"))


def _detail(alert_id: int) -> None:
    detail = alert_desk.alert_detail(rt, actor=actor, alert_id=alert_id)
    alert = detail.alert
    st.subheader(t("alerts.detail_heading", id=alert.id))
    meta = t(
        "alerts.detail_meta", severity=_severity(alert.severity), kind=_kind(alert.kind), created=kst(alert.created_at)
    )
    st.markdown(f"{badge(alert.status)} {meta}")
    st.info(t(f"alerts.explain_{alert.kind}"))
    st.caption(t("alerts.technical", message=plain(amounts_in(alert.message))))
    for column, label, value in zip(
        st.columns(2),
        (t("alerts.db_value"), t("alerts.portone_value")),
        (alert.db_value, alert.portone_value),
        strict=True,
    ):
        with column.container(border=True):
            st.markdown(f"**{label}**")
            st.text(amounts_in(value))
    if alert.acknowledged_by:
        st.caption(t("alerts.handled_ack", user=plain(alert.acknowledged_by)))
    if alert.resolved_by:
        st.caption(t("alerts.handled_resolved", user=plain(alert.resolved_by), note=plain(alert.resolution_note)))
    _payment(detail)
    if detail.history:
        with st.expander(t("alerts.history_heading")):
            for entry in detail.history:
                action = t(f"alerts.action_{entry.action.removeprefix('alert.')}")
                line = t(
                    "alerts.history_line", time=kst(entry.at, seconds=True), actor=plain(entry.actor), action=action
                )
                st.markdown(f"- {line}" + (f" — {plain(entry.note)}" if entry.note else ""))
    _actions(alert)


def _schedule() -> None:
    """The scheduled reconciliation's last run (time and outcome), and a warning when it is stale."""
    state = reconcile_schedule.schedule_state(rt)
    st.caption(scheduled_run_line(state))
    if state.stale:
        st.warning(t("reconcile.schedule_stale", minutes=state.stale_after.total_seconds() / 60))


def _reconciliation() -> None:
    """Run a reconciliation now (operators) and show the recent runs (everyone)."""
    with st.expander(t("reconcile.heading")):
        st.caption(t("reconcile.intro"))
        if actor.can(Permission.RUN_RECONCILIATION):
            today = datetime.now(KST).date()
            since_day = st.date_input(t("reconcile.since"), value=today - timedelta(days=7), key="reconcile_since")
            if st.button(t("reconcile.run"), key="reconcile_run"):
                bar = st.progress(0.0)

                def report(step: reconcile.RunProgress) -> None:
                    bar.progress(min(step.fraction, 1.0), text=t("reconcile.running", checked=step.payments_checked))

                since = datetime.combine(since_day, datetime.min.time(), tzinfo=KST)
                try:
                    run = reconcile.start_run(rt, since=since, actor=actor, progress=report)
                except JobBusy as exc:  # the scheduled run (or another person's) holds the lock
                    st.warning(t("reconcile.busy", message=plain(exc)))
                except PaymentsError as exc:
                    st.warning(t("reconcile.failed", message=plain(exc)))
                else:
                    new = sum(c.new for c in run.counts.values())
                    resolved = sum(c.resolved for c in run.counts.values())
                    st.success(
                        t(
                            "reconcile.done",
                            checked=run.payments_checked,
                            new=new,
                            resolved=resolved,
                            seconds=run.duration_seconds,
                        )
                    )
        runs = reconcile_runs.list_runs(rt, limit=10, actor=actor)
        st.markdown(f"**{t('reconcile.runs')}**")
        if not runs:
            st.info(t("reconcile.no_runs"))
            return
        st.dataframe(
            pd.DataFrame(
                {
                    t("reconcile.col_started"): [kst(r.started_at) for r in runs],
                    t("reconcile.col_window"): [f"{kst(r.window_start)} ~ {kst(r.window_end)}" for r in runs],
                    t("reconcile.col_by"): [r.started_by for r in runs],
                    t("reconcile.col_status"): [r.status for r in runs],
                    t("reconcile.col_checked"): [r.payments_checked for r in runs],
                    t("reconcile.col_new"): [sum(c.new for c in r.counts.values()) for r in runs],
                    t("reconcile.col_resolved"): [sum(c.resolved for c in r.counts.values()) for r in runs],
                    t("reconcile.col_seconds"): [round(r.duration_seconds, 1) for r in runs],
                }
            ),
            hide_index=True,
        )


st.title(t("alerts.title"))
st.caption(t("alerts.intro"))
_schedule()
_flash()
status, kind, severity = _filters()
signature = (status, kind, severity)
if st.session_state.get("alerts_filters") != signature:
    st.session_state["alerts_filters"] = signature
    st.session_state["alerts_page"] = 1


def _linked_alert() -> int | None:
    """The alert a link names (/alerts?alert=12, as notifications send), once: later runs are the page's."""
    raw = st.query_params.get("alert")
    if raw is None:
        return None
    del st.query_params["alert"]
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def _linked_detail(alert_id: int) -> None:
    try:
        _detail(alert_id)
    except NotFound:
        st.warning(t("alerts.linked_missing", id=alert_id))


page = alert_desk.list_alerts(
    rt,
    actor=actor,
    status=status,
    kind=kind,
    severity=severity,
    page=int(st.session_state.get("alerts_page", 1)),
    page_size=PAGE_SIZE,
)
if not page.rows:
    st.info(t("alerts.empty_filtered") if kind or severity else t(f"alerts.empty_{status}"))
else:
    _table(page.rows)
    _pager(page)
    by_id = {row.id: row for row in page.rows}
    pick_labels = {
        i: t("alerts.pick_option", id=i, kind=_kind(r.kind), payment=r.imp_uid or t("alerts.no_payment"))
        for i, r in by_id.items()
    }
    linked = _linked_alert()
    if linked is not None and linked in by_id:
        st.session_state["alerts_pick"] = linked
    picked = st.selectbox(t("alerts.pick"), list(by_id), format_func=pick_labels.__getitem__, key="alerts_pick")
    if linked is not None and linked not in by_id:  # filtered out or on another page: shown all the same
        _linked_detail(linked)
    elif picked is not None:
        _detail(int(picked))
_reconciliation()
