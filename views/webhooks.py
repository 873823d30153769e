"""Webhook log: every delivery, what verification and processing made of it; replay one."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard.auth import gate
from dashboard.format import kst, plain, status_label
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.auth.access import Permission
from services.core.errors import GatewayError, InvalidRequest, PaymentsError
from services.core.kst import KST
from services.portone.types import PortOneStatus
from services.webhooks import log as webhook_log

actor = gate(Permission.VIEW)
rt = get_runtime()
can_replay = actor.can(Permission.REPLAY_WEBHOOK)
PAGE_SIZE = 50
RESULT_COLORS = {"processed": "green", "received": "blue", "ignored": "gray"}
_PORTONE_STATUSES = frozenset(PortOneStatus) - {PortOneStatus.UNKNOWN}  # UNKNOWN is ours, not PortOne's


def _result(result: str) -> str:
    return t(f"webhooks.result_{result}")


def _flash() -> None:
    message = st.session_state.pop("webhooks_flash", None)
    if message:
        st.success(message)


def _filters() -> tuple[str | None, str | None, date, date]:
    today = datetime.now(KST).date()
    left, middle, right = st.columns([1, 2, 2])
    results = ["", *webhook_log.RESULTS]
    labels = {r: _result(r) if r else t("webhooks.all") for r in results}
    result = left.selectbox(t("webhooks.result_filter"), results, format_func=labels.__getitem__, key="webhooks_result")
    imp_uid = middle.text_input(t("webhooks.imp_uid_filter"), key="webhooks_imp_uid", max_chars=64)
    picked = right.date_input(
        t("webhooks.range"), value=(today - timedelta(days=6), today), max_value=today, key="webhooks_range"
    )
    chosen = [d for d in (picked if isinstance(picked, tuple | list) else (picked,)) if isinstance(d, date)]
    start, end = (chosen[0], chosen[-1]) if chosen else (today, today)
    return result or None, imp_uid.strip() or None, start, end


def _table(rows: list[webhook_log.WebhookRow]) -> None:
    frame = pd.DataFrame(
        [
            {
                t("webhooks.col_id"): f"#{row.id}",
                t("webhooks.col_received"): kst(row.received_at, seconds=True),
                t("webhooks.col_source"): row.source_ip or t("webhooks.none"),
                t("webhooks.col_content_type"): row.content_type or t("webhooks.none"),
                t("webhooks.col_imp_uid"): row.imp_uid or t("webhooks.none"),
                t("webhooks.col_claimed"): _claimed(row.claimed_status),
                t("webhooks.col_verified"): t("webhooks.verified_yes" if row.verified else "webhooks.verified_no"),
                t("webhooks.col_result"): _result(row.result),
                t("webhooks.col_detail"): row.detail or "",
            }
            for row in rows
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")


def _pager(page: webhook_log.WebhookPage, cursors: list[int]) -> None:
    first, nxt = st.columns(2)
    if cursors and first.button(t("webhooks.first"), key="webhooks_first"):
        st.session_state["webhooks_cursors"] = []
        st.rerun()
    if page.next_before_id is not None and nxt.button(t("webhooks.next"), key="webhooks_next"):
        st.session_state["webhooks_cursors"] = [*cursors, page.next_before_id]
        st.rerun()


def _body(body: str) -> None:
    with st.expander(t("webhooks.body")):
        if not body:
            st.caption(t("webhooks.body_empty"))
            return
        try:
            st.code(json.dumps(json.loads(body), ensure_ascii=False, indent=2), language="json")
        except ValueError:
            st.code(body, language=None)


def _replay(event_id: int) -> None:
    try:
        with st.spinner(t("webhooks.replaying")):
            replayed = webhook_log.replay(rt, actor=actor, event_id=event_id)
    except GatewayError:
        st.error(t("app.unavailable"))
    except PaymentsError as exc:
        st.error(t("app.error_generic", message=plain(exc)))
    else:
        st.session_state["webhooks_flash"] = t(
            "webhooks.replayed", id=replayed.event_id, result=_result(replayed.result), detail=plain(replayed.detail)
        )
        st.session_state["webhooks_cursors"] = []
        st.rerun()


def _claimed(status: str | None) -> str:
    """PortOne's V1 statuses in words, with the raw value (the body may say anything)."""
    if not status:
        return t("webhooks.none")
    return f"{status_label(status)} ({status})" if status in _PORTONE_STATUSES else status


def _detail(event_id: int) -> None:
    detail = webhook_log.get_event(rt, actor=actor, event_id=event_id)
    event = detail.event
    st.subheader(t("webhooks.detail_heading", id=event.id))
    color = RESULT_COLORS.get(event.result, "red")
    verified = t("webhooks.verified_yes" if event.verified else "webhooks.verified_no")
    st.markdown(f":{color}-badge[{_result(event.result)}] :{'green' if event.verified else 'gray'}-badge[{verified}]")
    meta = t(
        "webhooks.detail_meta",
        time=kst(event.received_at, seconds=True),
        source=plain(event.source_ip) or t("webhooks.none"),
        content_type=plain(event.content_type) or t("webhooks.none"),
    )
    st.caption(meta)
    if event.is_replay:
        st.caption(t("webhooks.replay_source", source=plain(event.source_ip)))
    if event.processed_at:
        st.caption(t("webhooks.processed_at", time=kst(event.processed_at, seconds=True)))
    st.markdown(f"**{t('webhooks.detail_label')}**")
    st.text(event.detail or t("webhooks.none"))
    _body(detail.body)
    if not can_replay:
        st.caption(t("webhooks.viewer_note"))
    elif st.button(t("webhooks.replay"), help=t("webhooks.replay_help"), key="webhooks_replay"):
        _replay(event.id)


st.title(t("webhooks.title"))
st.caption(t("webhooks.intro"))
_flash()
st.caption(t("webhooks.counts", **webhook_log.result_counts(rt, actor=actor)))
result, imp_uid, start, end = _filters()
signature = (result, imp_uid, start, end)
if st.session_state.get("webhooks_filters") != signature:
    st.session_state["webhooks_filters"] = signature
    st.session_state["webhooks_cursors"] = []
cursors: list[int] = list(st.session_state.get("webhooks_cursors", []))
try:
    page = webhook_log.list_events(
        rt,
        actor=actor,
        result=result,
        imp_uid=imp_uid,
        start=start,
        end=end,
        before_id=cursors[-1] if cursors else None,
        limit=PAGE_SIZE,
    )
except InvalidRequest:
    st.error(t("webhooks.bad_range"))
    st.stop()
if not page.rows:
    st.info(t("webhooks.empty"))
else:
    _table(page.rows)
    _pager(page, cursors)
    by_id = {row.id: row for row in page.rows}
    labels = {
        i: t(
            "webhooks.pick_option",
            id=i,
            time=kst(r.received_at, seconds=True),
            imp_uid=r.imp_uid or t("webhooks.none"),
            result=_result(r.result),
        )
        for i, r in by_id.items()
    }
    picked = st.selectbox(t("webhooks.pick"), list(by_id), format_func=labels.__getitem__, key="webhooks_pick")
    if picked is not None:
        _detail(int(picked))
