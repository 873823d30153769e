"""Payments: filters, one search box, keyset pages, totals per currency and saved views.
A selected row opens its detail; operators refund a row in one dialog from its "환불" cell
(dashboard.refund_dialog) or pick several rows for a bulk refund."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import refund_dialog
from dashboard.auth import gate
from dashboard.format import plain, status_label
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.auth.access import Permission, sees_personal_data
from services.core.errors import PaymentsError
from services.core.kst import kst_today
from services.payments import saved_views, search
from services.payments.search import PaymentFilters, PaymentPage

actor = gate(Permission.VIEW)
rt = get_runtime()
REFUND_DIALOG = "payments.refund_dialog"
REFUNDABLE = {str(search.PaymentState.PAID), str(search.PaymentState.PARTIALLY_REFUNDED)}
options = search.filter_options(rt)
st.title(t("payments.title"))

WIDGETS = ("dates", "time_basis", "sort", "states", "currencies", "pg_providers", "pay_methods", "query")


def _apply(filters: PaymentFilters) -> None:
    """Put filters into the widgets (before they are drawn: from a callback)."""
    st.session_state["payments.dates"] = (filters.date_from, filters.date_to)
    for name in WIDGETS[1:]:
        value = getattr(filters, name)
        st.session_state[f"payments.{name}"] = list(value) if isinstance(value, tuple) else str(value)


def _reset() -> None:
    _apply(PaymentFilters.default())


def _load_view(views: dict[str, saved_views.SavedViewInfo]) -> None:
    view = views.get(st.session_state.get("payments.view", ""))
    if view is not None and view.filters is not None:
        _apply(view.filters)


if "payments.dates" not in st.session_state:
    _reset()

# -- saved views ---------------------------------------------------------------------------------
views = {view.name: view for view in saved_views.list_views(rt, actor=actor)}
with st.expander(t("payments.views"), expanded=False):
    left, right = st.columns(2)
    left.selectbox(t("payments.view_pick"), list(views), key="payments.view", placeholder=t("payments.view_none"))
    left.button(t("payments.view_load"), key="payments.view_load", on_click=_load_view, args=(views,))
    view_name = right.text_input(t("payments.view_name"), key="payments.view_name", max_chars=100)
    save, delete = right.columns(2)
    save_clicked = save.button(t("payments.view_save"), key="payments.view_save")
    delete_clicked = delete.button(t("payments.view_delete"), key="payments.view_delete", disabled=not views)

# -- filters -------------------------------------------------------------------------------------
today = kst_today()
row = st.columns([2, 1, 1])
dates = row[0].date_input(
    t("payments.dates"),
    key="payments.dates",
    max_value=today,
    min_value=today - timedelta(days=3650),
    help=t("payments.dates_help", days=search.MAX_RANGE_DAYS),
)
row[1].selectbox(
    t("payments.time_basis"),
    [str(b) for b in search.TimeBasis],
    key="payments.time_basis",
    format_func=lambda b: t(f"payments.basis_{b}"),
    help=t("payments.time_basis_help"),
)
row[2].selectbox(
    t("payments.sort"),
    [str(s) for s in search.SortOrder],
    key="payments.sort",
    format_func=lambda s: t(f"payments.sort_{s}"),
)
row = st.columns(4)
row[0].multiselect(
    t("payments.states"),
    list(options.states),
    key="payments.states",
    format_func=status_label,
    placeholder=t("payments.all"),
)
row[1].multiselect(
    t("payments.currencies"), list(options.currencies), key="payments.currencies", placeholder=t("payments.all")
)
row[2].multiselect(
    t("payments.pg_providers"), list(options.pg_providers), key="payments.pg_providers", placeholder=t("payments.all")
)
row[3].multiselect(
    t("payments.pay_methods"), list(options.pay_methods), key="payments.pay_methods", placeholder=t("payments.all")
)
query = st.text_input(
    t("payments.search"),
    key="payments.query",
    placeholder=t("payments.search_placeholder"),
    help=t("payments.search_help" if sees_personal_data(actor) else "payments.search_help_masked"),
)
st.button(t("payments.reset"), key="payments.reset", on_click=_reset)

first, last = (tuple(dates) + (None, None))[:2] if isinstance(dates, tuple | list) else (dates, None)
if first and last and (last - first).days + 1 > search.MAX_RANGE_DAYS:
    st.error(t("payments.range_too_long", days=search.MAX_RANGE_DAYS))
    st.stop()
try:
    filters = PaymentFilters(
        date_from=first or today,
        date_to=last or first or today,
        time_basis=st.session_state["payments.time_basis"],
        sort=st.session_state["payments.sort"],
        states=tuple(st.session_state["payments.states"]),
        currencies=tuple(st.session_state["payments.currencies"]),
        pg_providers=tuple(st.session_state["payments.pg_providers"]),
        pay_methods=tuple(st.session_state["payments.pay_methods"]),
        query=query or "",
    )
except PaymentsError as exc:
    st.error(t("payments.bad_filters", message=plain(exc)))
    st.stop()

if save_clicked:
    try:
        saved_views.save_view(rt, actor=actor, name=view_name, filters=filters)
        st.toast(t("payments.view_saved", name=plain(view_name.strip())))
        st.rerun()
    except PaymentsError as exc:
        st.error(t("payments.view_error", message=plain(exc)))
if delete_clicked and st.session_state.get("payments.view") in views:
    saved_views.delete_view(rt, actor=actor, view_id=views[st.session_state["payments.view"]].id)
    st.rerun()


# -- totals: read-only aggregates. Wide ranges are cached briefly (they cost most); a week is
# cheap and always fresh, so the totals never disagree with the table for long.
# Keyed by whether buyer fields are searched whole (viewers) or by prefix: a viewer must never be
# handed the totals of an operator's prefix search.
@st.cache_data(ttl=30, show_spinner=False)
def _cached_totals(
    filters: PaymentFilters,
    database_url: str,  # noqa: ARG001 - key
    personal_data: bool,  # noqa: ARG001 - key
) -> list[search.CurrencyTotal]:
    return search.payment_totals(get_runtime(), actor=actor, filters=filters)


if (filters.date_to - filters.date_from).days >= 31:
    totals = _cached_totals(filters, rt.db.url, sees_personal_data(actor))
else:
    totals = search.payment_totals(rt, actor=actor, filters=filters)
if totals:
    cells = st.columns(max(len(totals), 2))
    for cell, total in zip(cells, totals, strict=False):
        cell.metric(
            t("payments.net", currency=plain(total.currency)),
            ui.money_text(total.net, total.currency),
            help=t("payments.totals_help"),
        )
        cell.caption(
            t(
                "payments.totals_line",
                count=f"{total.count:,}",
                paid=ui.money_text(total.paid, total.currency),
                refunded=ui.money_text(total.refunded, total.currency),
            )
        )

# -- the table -----------------------------------------------------------------------------------
shown: dict[str, PaymentPage] = {}
time_label = t(f"payments.col_time_{filters.time_basis}")


def _fetch(cursor: str | None) -> tuple[pd.DataFrame, str | None]:
    page = search.search_payments(rt, actor=actor, filters=filters, cursor=cursor)
    shown["page"] = page
    frame = pd.DataFrame(
        [
            {
                "refund": t("payments.row_refund") if can_refund and str(r.state) in REFUNDABLE else "",
                "time": ui.time_text(r.paid_at if filters.time_basis == "paid" else r.started_at),
                "state": [str(r.state)],
                "amount": ui.money_text(r.amount, r.currency),
                "refunded": ui.money_text(r.cancel_amount, r.currency) if r.cancel_amount else "",
                "buyer": r.buyer_name or "",
                "email": r.buyer_email or "",
                "phone": r.buyer_tel or "",
                "merchant_uid": r.merchant_uid,
                "imp_uid": r.imp_uid,
                "pg": r.pg_provider or "",
                "method": r.pay_method or "",
            }
            for r in page.rows
        ],
        columns=[
            "refund",
            "time",
            "state",
            "amount",
            "refunded",
            "buyer",
            "email",
            "phone",
            "merchant_uid",
            "imp_uid",
            "pg",
            "method",
        ],
    )
    return (frame if can_refund and not bulk_mode else frame.drop(columns=["refund"])), page.next_cursor


def _empty() -> None:
    st.info(t("payments.empty_search" if filters.query else "payments.empty"))


can_refund = actor.can(Permission.REFUND)
bulk_mode = can_refund and st.toggle(
    t("payments.bulk_mode"), key="payments.bulk_mode", help=t("payments.bulk_mode_help")
)
if can_refund and not bulk_mode:
    refund_dialog.show_result(REFUND_DIALOG)  # the last refund's outcome, above the refreshed table
try:
    result = ui.paged_table(
        "payments.table",
        fetch=_fetch,
        reset_on=(json.dumps(filters.to_dict(today=today), sort_keys=True, ensure_ascii=False), bulk_mode),
        column_config={
            "refund": st.column_config.TextColumn(
                t("payments.col_refund"), width="small", help=t("payments.col_refund_help")
            ),
            "time": ui.time_column(time_label),
            "state": ui.status_column(t("payments.col_state"), [str(s) for s in search.PaymentState]),
            "amount": ui.money_column(t("payments.col_amount")),
            "refunded": ui.money_column(t("payments.col_refunded")),
            "buyer": st.column_config.TextColumn(t("payments.col_buyer")),
            "email": st.column_config.TextColumn(t("payments.col_email")),
            "phone": st.column_config.TextColumn(t("payments.col_phone")),
            "merchant_uid": st.column_config.TextColumn(t("payments.col_merchant_uid")),
            "imp_uid": st.column_config.TextColumn(t("payments.col_imp_uid")),
            "pg": st.column_config.TextColumn(t("payments.col_pg")),
            "method": st.column_config.TextColumn(t("payments.col_method")),
        },
        # Operators: a click on a row's "환불" cell opens its refund dialog, any other cell its detail.
        selection_mode="multi-row" if bulk_mode else (["single-row", "single-cell"] if can_refund else "single-row"),
        empty=_empty,
        generation=st.session_state.get("payments.table_generation", 0),
    )
except PaymentsError as exc:
    ui.reset_pages("payments.table")
    st.error(t("payments.bad_filters", message=plain(exc)))
    st.stop()

page = shown.get("page")
if page is not None and page.masked and page.rows:
    st.caption(t("payments.masked_note"))
chosen = [str(result.frame.iloc[i]["imp_uid"]) for i in result.selected if i < len(result.frame)]
clicked = [(i, column) for i, column in result.cells if i < len(result.frame)]
if can_refund and not bulk_mode:
    if clicked and clicked[0][1] == "refund" and result.frame.iloc[clicked[0][0]]["refund"]:
        # The row's refund action: the dialog opens here; the click is forgotten (a new table key).
        st.session_state["payments.table_generation"] = st.session_state.get("payments.table_generation", 0) + 1
        refund_dialog.open_refund(REFUND_DIALOG, rt, actor, str(result.frame.iloc[clicked[0][0]]["imp_uid"]))
        clicked = []
    elif clicked:
        chosen = [str(result.frame.iloc[clicked[0][0]]["imp_uid"])]  # any other cell: the row's detail
    refund_dialog.render(REFUND_DIALOG, rt, actor)
if bulk_mode:
    if st.button(t("payments.bulk_go", count=len(chosen)), key="payments.bulk_go", type="primary", disabled=not chosen):
        st.session_state["refunds.bulk_imp_uids"] = chosen
        st.switch_page("views/refunds.py")
elif chosen:
    st.session_state["payment_detail.imp_uid"] = chosen[0]
    st.switch_page("views/payment_detail.py", query_params={"imp_uid": chosen[0]})
else:
    st.caption(t("payments.select_hint_refund" if can_refund else "payments.select_hint"))
