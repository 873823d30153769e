"""Payment detail: our record beside PortOne's live record (differences highlighted), the
timeline from our database, refund history and receipts. Operators refund it here in one dialog
(dashboard.refund_dialog); the page then shows the new figures and history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import refund_dialog
from dashboard.auth import gate
from dashboard.format import badge, kst, plain, status_label, web_url
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.auth.access import Permission
from services.core.errors import NotFound, PaymentsError
from services.payments import detail as details

actor = gate(Permission.VIEW)
rt = get_runtime()
REFUND_DIALOG = "payment_detail.refund_dialog"
st.title(t("payment_detail.title"))

# -- which payment: ?imp_uid=, the payments page's selection, or the search box ------------------
lookup = st.text_input(
    t("payment_detail.lookup"), key="payment_detail.lookup", placeholder=t("payment_detail.lookup_placeholder")
)
if st.button(t("payment_detail.open"), key="payment_detail.open") and lookup.strip():
    try:
        matches = details.find_payments(rt, actor=actor, text=lookup)
    except PaymentsError as exc:
        matches = []
        st.error(t("app.error_generic", message=plain(exc)))
    if not matches:
        st.warning(t("payment_detail.no_match", text=plain(lookup.strip())))
    else:
        st.session_state["payment_detail.matches"] = matches
        st.session_state["payment_detail.imp_uid"] = matches[0].imp_uid
        st.query_params["imp_uid"] = matches[0].imp_uid

matches = st.session_state.get("payment_detail.matches") or []
if len(matches) > 1:
    st.caption(t("payment_detail.several", count=len(matches)))
    picked = st.selectbox(
        t("payment_detail.pick_one"),
        [m.imp_uid for m in matches],
        key="payment_detail.pick",
        format_func=lambda uid: next(
            f"{m.imp_uid} · {status_label(m.status)} · {ui.money_text(m.amount, m.currency)} · {kst(m.started_at)}"
            for m in matches
            if m.imp_uid == uid
        ),
    )
    if picked and picked != st.session_state.get("payment_detail.imp_uid"):
        st.session_state["payment_detail.imp_uid"] = picked
        st.query_params["imp_uid"] = picked

imp_uid = st.query_params.get("imp_uid") or st.session_state.get("payment_detail.imp_uid")
if not imp_uid:
    st.info(t("payment_detail.empty"))
    st.page_link("views/payments.py", label=t("payment_detail.to_payments"), icon=":material/payments:")
    st.stop()

try:
    with st.spinner(t("payment_detail.loading")):
        detail = details.payment_detail(rt, actor=actor, imp_uid=str(imp_uid))
except NotFound:
    st.warning(t("payment_detail.not_found", imp_uid=plain(imp_uid)))
    st.stop()

# -- header --------------------------------------------------------------------------------------
st.subheader(plain(detail.imp_uid))
st.markdown(f"{badge(detail.state)} &nbsp; {t('payment_detail.order')} {plain(detail.merchant_uid)}")
head = st.columns(3)
head[0].metric(t("payment_detail.amount"), ui.money_text(detail.ours["amount"], detail.currency))
head[1].metric(t("payment_detail.refunded"), ui.money_text(detail.ours["cancel_amount"], detail.currency))
head[2].metric(
    t("payment_detail.refundable"),
    ui.money_text(detail.refundable, detail.currency),
    help=t("payment_detail.refundable_live" if detail.refundable_from_portone else "payment_detail.refundable_ours"),
)
links = st.columns(4)
receipt = web_url(detail.receipt_url)
if receipt:
    links[0].link_button(t("payment_detail.receipt"), receipt)
cancel_receipts = [(amount, web_url(url)) for _cid, amount, url in detail.cancel_receipts if web_url(url)]
for index, (amount, url) in enumerate(cancel_receipts[:3], start=1):
    links[index].link_button(t("payment_detail.cancel_receipt", amount=ui.money_text(amount, detail.currency)), url)
if detail.full_only and detail.refundable > 0:
    st.info(t(f"payment_detail.full_only_{detail.full_only}"))
if actor.can(Permission.REFUND):
    if detail.refundable > 0 and st.button(t("payment_detail.refund"), key="payment_detail.refund", type="primary"):
        refund_dialog.open_refund(REFUND_DIALOG, rt, actor, detail.imp_uid)
    refund_dialog.show_result(REFUND_DIALOG)
    refund_dialog.render(REFUND_DIALOG, rt, actor)


# -- ours vs PortOne -----------------------------------------------------------------------------
def _shown(name: str, value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, Decimal):
        return ui.money_text(value, detail.currency)
    if isinstance(value, datetime):
        return kst(value, seconds=True)
    if name == "status":
        return status_label(str(value))
    return str(value)


st.subheader(t("payment_detail.compare"))
if detail.portone_error:
    st.warning(t(f"payment_detail.portone_{detail.portone_error}", message=plain(detail.portone_message)))
elif detail.differences:
    names = ", ".join(t(f"payment_detail.field_{c.field}") for c in detail.differences)
    st.error(t("payment_detail.differs", count=len(detail.differences), fields=names))
else:
    st.success(t("payment_detail.same"))
compare = pd.DataFrame(
    [
        {
            "field": t(f"payment_detail.field_{c.field}"),
            "ours": _shown(c.field, c.ours),
            "portone": _shown(c.field, c.portone) if detail.portone is not None else "—",
            "differs": "⚠️" if c.differs else "",
        }
        for c in detail.comparisons
    ]
)
styled = compare.style.apply(lambda row: ["background-color: #ffe1e1" if row["differs"] else "" for _ in row], axis=1)
st.dataframe(
    styled,
    hide_index=True,
    width="stretch",
    key="payment_detail.compare",
    column_config={
        "field": st.column_config.TextColumn(t("payment_detail.col_field")),
        "ours": st.column_config.TextColumn(t("payment_detail.col_ours")),
        "portone": st.column_config.TextColumn(t("payment_detail.col_portone")),
        "differs": st.column_config.TextColumn(t("payment_detail.col_differs"), width="small"),
    },
)


# -- timeline ------------------------------------------------------------------------------------
def _outcome(kind: str, outcome: str | None) -> str:
    if not outcome:
        return ""
    if kind == "webhook":
        return t(f"payment_detail.webhook_{outcome}")
    if kind == "alert":
        return t(f"payment_detail.severity_{outcome}")
    return status_label(outcome)


st.subheader(t("payment_detail.timeline"))
timeline = pd.DataFrame(
    [
        {
            "at": kst(event.at, seconds=True),
            "event": t(f"payment_detail.event_{event.kind}"),
            "outcome": _outcome(event.kind, event.outcome),
            "actor": event.actor or "",
            "summary": event.summary,
        }
        for event in detail.timeline
    ],
    columns=["at", "event", "outcome", "actor", "summary"],
)
st.dataframe(
    timeline,
    hide_index=True,
    width="stretch",
    key="payment_detail.timeline",
    column_config={
        "at": st.column_config.TextColumn(t("payment_detail.col_at")),
        "event": st.column_config.TextColumn(t("payment_detail.col_event")),
        "outcome": st.column_config.TextColumn(t("payment_detail.col_outcome")),
        "actor": st.column_config.TextColumn(t("payment_detail.col_actor")),
        "summary": st.column_config.TextColumn(t("payment_detail.col_summary")),
    },
)

# -- refunds -------------------------------------------------------------------------------------
st.subheader(t("payment_detail.refunds"))
if not detail.refunds:
    st.caption(t("payment_detail.no_refunds"))
else:
    refunds = pd.DataFrame(
        [
            {
                "at": kst(r.created_at, seconds=True),
                "amount": ui.money_text(r.amount, r.currency),
                "status": [r.status],
                "reason": r.reason,
                "by": r.requested_by,
                "source": t(f"payment_detail.source_{r.source}"),
                "error": r.error_message or "",
                "receipt": web_url(r.receipt_url),
                "account": r.refund_account or "",  # masked: only the masked number is stored
            }
            for r in detail.refunds
        ]
    )
    st.dataframe(
        refunds,
        hide_index=True,
        width="stretch",
        key="payment_detail.refund_table",
        column_config={
            "at": st.column_config.TextColumn(t("payment_detail.col_at")),
            "amount": ui.money_column(t("payment_detail.col_amount")),
            "status": ui.status_column(
                t("payment_detail.col_status"), ["succeeded", "pending", "failed", "rejected", "unknown"]
            ),
            "reason": st.column_config.TextColumn(t("payment_detail.col_reason")),
            "by": st.column_config.TextColumn(t("payment_detail.col_by")),
            "source": st.column_config.TextColumn(t("payment_detail.col_source")),
            "error": st.column_config.TextColumn(t("payment_detail.col_error")),
            "receipt": st.column_config.LinkColumn(
                t("payment_detail.col_receipt"), display_text=t("payment_detail.open_receipt")
            ),
            "account": st.column_config.TextColumn(t("payment_detail.col_refund_account")),
        },
    )

if detail.raw is not None:
    with st.expander(t("payment_detail.raw")):
        st.json(detail.raw, expanded=False)
