"""Reports: daily or monthly sales per currency, PG and pay method, with charts and CSV exports."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.auth import current_sign_in, gate
from dashboard.format import kst, money, plain, status_label
from dashboard.i18n import current_language, t
from dashboard.runtime import get_runtime
from services.auth.access import Actor, Permission
from services.core.errors import Forbidden, InvalidRequest, PaymentsError
from services.core.kst import kst_today
from services.reporting import export_links, exports
from services.reporting import sales as reports
from services.runtime import Runtime

actor = gate(Permission.VIEW)
rt = get_runtime()
# Widget labels are looked up in dicts built during the run (not `lambda: t(...)`), so the label
# stays in the language of the run even when the widget is read outside it (AppTest does).
STATUSES = {
    "payments": ("paid", "cancelled", "failed", "ready"),
    "refunds": ("succeeded", "pending", "unknown", "failed", "rejected"),
    "alerts": ("open", "acknowledged", "resolved"),
    "summary": (),
}


@st.cache_data(ttl=60, show_spinner=False)
def _summary(
    database_url: str,  # noqa: ARG001 - the cache key
    start: date,
    end: date,
    granularity: str,
    currency: str | None,
    _rt: Runtime,
    _actor: Actor,
) -> list[reports.SummaryRow]:
    """Read-only aggregates, the same for every role that may view: shared for 60 s."""
    return reports.summary(
        _rt, actor=_actor, start=start, end=end, granularity=reports.Granularity(granularity), currency=currency
    )


def _controls() -> tuple[date, date, str, str | None]:
    today = kst_today()
    left, middle, right = st.columns([1, 2, 1])
    granularity = left.radio(
        t("reports.granularity"),
        [str(g) for g in reports.Granularity],
        format_func={g: t(f"reports.granularity_{g}") for g in reports.Granularity}.__getitem__,
        horizontal=True,
        key="reports_granularity",
    )
    picked = middle.date_input(
        t("reports.range"), value=(today - timedelta(days=29), today), max_value=today, key="reports_range"
    )
    chosen = [d for d in (picked if isinstance(picked, tuple | list) else (picked,)) if isinstance(d, date)]
    start, end = (chosen[0], chosen[-1]) if chosen else (today, today)
    currencies = [""] + sorted(rt.settings.fee_table)
    currency = right.selectbox(
        t("reports.currency"),
        currencies,
        format_func={c: c or t("reports.currency_all") for c in currencies}.__getitem__,
        key="reports_currency",
    )
    if granularity == reports.Granularity.MONTH:
        start, end = reports.month_bounds(start, end)
        st.caption(t("reports.months_caption", start=start, end=end))
    return start, end, granularity, currency or None


def _frame(totals: dict[tuple[str, ...], reports.Totals], currency: str, labels: list[str]) -> pd.DataFrame:
    rows = []
    for key, total in totals.items():
        if key[0] != currency:
            continue
        row: dict[str, Any] = {
            label: value or t("reports.unknown") for label, value in zip(labels, key[1:], strict=True)
        }
        row[t("reports.col_paid_count")] = f"{total.paid_count:,}"
        row[t("reports.col_gross")] = money(total.gross, currency)
        row[t("reports.col_refund_count")] = f"{total.refund_count:,}"
        row[t("reports.col_refunds")] = money(total.refunds, currency)
        row[t("reports.col_net")] = money(total.net, currency)
        rows.append(row)
    return pd.DataFrame(rows)


def _table(frame: pd.DataFrame) -> None:
    right = st.column_config.TextColumn(alignment="right")
    numeric = ("col_paid_count", "col_gross", "col_refund_count", "col_refunds", "col_net")
    st.dataframe(frame, hide_index=True, width="stretch", column_config={t(f"reports.{k}"): right for k in numeric})


def _currency_section(rows: list[reports.SummaryRow], currency: str, all_periods: list[str]) -> None:
    total = reports.roll_up(rows)[(currency, "")]
    st.subheader(t("reports.currency_heading", currency=plain(currency)))
    gross, refunded, net = st.columns(3)
    gross.metric(t("reports.metric_gross", currency=plain(currency)), money(total.gross, currency))
    refunded.metric(t("reports.metric_refunds", currency=plain(currency)), money(total.refunds, currency))
    net.metric(t("reports.metric_net", currency=plain(currency)), money(total.net, currency))
    st.caption(t("reports.metric_count", paid=f"{total.paid_count:,}", refunds=f"{total.refund_count:,}"))
    per_period = reports.roll_up(rows, by="period")
    labels = [t("reports.col_gross"), t("reports.col_refunds"), t("reports.col_net")]
    # Floats only here, for the chart's y-axis; every figure shown as text stays exact.
    zero = reports.Totals(currency, 0, Decimal(0), 0, Decimal(0))
    chart = pd.DataFrame(
        [
            {"period": p, labels[0]: float(v.gross), labels[1]: float(v.refunds), labels[2]: float(v.net)}
            for p in all_periods
            for v in [per_period.get((currency, p), zero)]
        ]
    )
    st.markdown(f"**{t('reports.chart_heading', currency=plain(currency))}**")
    st.bar_chart(chart, x="period", y=labels, stack=False, x_label="", height=280)
    by_period, by_channel = st.tabs([t("reports.by_period"), t("reports.by_channel")])
    with by_period:
        _table(_frame(per_period, currency, [t("reports.col_period")]))
    with by_channel:
        channels = reports.roll_up(rows, by=("pg_provider", "pay_method"))
        _table(_frame(channels, currency, [t("reports.col_pg"), t("reports.col_method")]))


def _export_section(
    start: date, end: date, granularity: str, currency: str | None, rows: list[reports.SummaryRow]
) -> None:
    st.subheader(t("reports.export_heading"))
    st.caption(t("reports.export_caption"))
    kind_col, status_col = st.columns(2)
    kind = kind_col.selectbox(
        t("reports.export_kind"),
        [
            str(k)
            for k in (
                exports.ExportKind.SUMMARY,
                exports.ExportKind.PAYMENTS,
                exports.ExportKind.REFUNDS,
                exports.ExportKind.ALERTS,
            )
        ],
        format_func={k: t(f"reports.kind_{k}") for k in exports.ExportKind}.__getitem__,
        key="reports_export_kind",
    )
    status = None
    if STATUSES[kind]:
        status = status_col.selectbox(
            t("reports.export_status"),
            ["", *STATUSES[kind]],
            format_func={
                s: status_label(s) if s else t("reports.status_all") for s in ["", *STATUSES[kind]]
            }.__getitem__,
            key=f"reports_export_status_{kind}",
        )
    personal = False
    if kind in ("payments", "refunds"):
        if actor.can(Permission.EXPORT_UNMASKED):
            personal = st.checkbox(
                t("reports.personal_data"), help=t("reports.personal_data_help"), key="reports_export_personal"
            )
        if not personal:
            st.caption(t("reports.masked_note"))
    filters = exports.ExportFilters(
        start=start, end=end, currency=currency, status=status or None, granularity=granularity
    )
    request = exports.prepare(
        actor=actor, kind=kind, filters=filters, include_personal_data=personal, language=current_language()
    )
    signature = (kind, tuple(sorted(filters.to_dict().items())), personal, current_language())
    prepared = st.session_state.get("reports_export")
    if prepared and prepared["signature"] != signature:
        st.session_state.pop("reports_export", None)
        prepared = None
    # The summary's rows are the (cached) figures above; other exports cost one COUNT query.
    estimate = len(rows) if kind == exports.ExportKind.SUMMARY else exports.estimate_rows(rt, request)
    st.caption(t("reports.estimate", rows=estimate))
    if estimate <= rt.settings.export_stream_threshold_rows:
        if prepared is None and st.button(t("reports.prepare"), key="reports_export_prepare"):
            with st.spinner(t("reports.building")):
                built = exports.build_file(rt, request)
            prepared = {"signature": signature, "data": built.data, "rows": built.rows, "name": built.file_name}
            st.session_state["reports_export"] = prepared
        if prepared is not None:
            st.download_button(
                t("reports.download", rows=prepared["rows"]),
                data=prepared["data"],
                file_name=prepared["name"],
                mime="text/csv",
                on_click="ignore",
                type="primary",
                key="reports_export_download",
            )
        return
    st.info(t("reports.large"))
    link = st.session_state.get("reports_link")
    if link and (link["signature"] != signature or not export_links.is_open(rt, link["id"])):
        link = None  # another export, or the link was used, revoked or has expired
    if st.button(t("reports.make_link"), key="reports_export_link"):
        sign_in = current_sign_in()
        if sign_in is None:
            st.stop()
        made = export_links.issue_link(rt, request, sign_in=sign_in)
        link = {"signature": signature, "url": made.url, "id": made.link_id, "expires_at": made.expires_at}
    st.session_state["reports_link"] = link
    if link is not None:
        st.link_button(t("reports.open_link"), link["url"], type="primary")
        minutes = max(1, rt.settings.export_link_ttl_seconds // 60)
        st.caption(t("reports.link_expires", time=kst(link["expires_at"]), minutes=minutes))


st.title(t("reports.title"))
st.caption(t("reports.intro"))
start, end, granularity, currency = _controls()
head, refresh = st.columns([5, 1])
head.caption(t("reports.as_of"))
if refresh.button(t("reports.refresh"), key="reports_refresh"):
    _summary.clear()
    st.rerun()
try:
    rows = _summary(rt.db.url, start, end, granularity, currency, rt, actor)
except InvalidRequest:
    st.error(t("reports.bad_range"))
    st.stop()
if not rows:
    st.info(t("reports.empty"))
for code in sorted({row.currency for row in rows}):
    _currency_section(rows, code, reports.periods(start, end, reports.Granularity(granularity)))
    st.divider()
try:
    _export_section(start, end, granularity, currency, rows)
except Forbidden:
    st.error(t("reports.forbidden"))
except PaymentsError as exc:
    st.error(t("reports.error", message=plain(exc)))
