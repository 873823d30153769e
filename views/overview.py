"""Overview: today, 7 days and this month per currency; open alerts; the last webhook; 30-day volume."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboard.auth import gate
from dashboard.format import STATUS_COLORS, kst, money, plain, status_label
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.auth.access import Actor, Permission
from services.core.kst import KST
from services.reporting import overview as figures
from services.runtime import Runtime

actor = gate(Permission.VIEW)
rt = get_runtime()


@st.cache_data(ttl=30, show_spinner=False)
def _overview(database_url: str, _rt: Runtime, _actor: Actor) -> figures.Overview:  # noqa: ARG001 - cache key
    """Shared by everyone for 30 s: read-only aggregates, the same for every role that may view."""
    return figures.overview(_rt, actor=_actor)


def _today_metrics(data: figures.Overview) -> None:
    today = data.period("today")
    st.subheader(t("overview.today_heading"))
    if not today.figures:
        st.caption(t("overview.today_none"))
        return
    columns = st.columns(max(2 * len(today.figures), 2))
    for index, row in enumerate(today.figures):
        paid_col, net_col = columns[2 * index], columns[2 * index + 1]
        paid_col.metric(t("overview.today_paid", currency=plain(row.currency)), money(row.paid_amount, row.currency))
        paid_col.caption(
            t(
                "overview.today_detail",
                count=row.paid_count,
                refunds=money(row.refund_amount, row.currency),
                refund_count=row.refund_count,
            )
        )
        net_col.metric(t("overview.today_net", currency=plain(row.currency)), money(row.net_amount, row.currency))


def _period_tables(data: figures.Overview) -> None:
    st.subheader(t("overview.periods_heading"))
    st.caption(t("overview.periods_caption"))
    right = st.column_config.TextColumn(alignment="right")
    for currency in data.currencies:
        rows = []
        for period in data.periods:
            row = next((f for f in period.figures if f.currency == currency), None)
            last_day = (period.end - timedelta(seconds=1)).astimezone(KST).date()
            rows.append(
                {
                    t("overview.col_period"): t(f"overview.period_{period.key}"),
                    t("overview.col_range"): f"{period.start.astimezone(KST).date()} ~ {last_day}",
                    t("overview.col_paid_count"): f"{row.paid_count if row else 0:,}",
                    t("overview.col_paid_amount"): money(row.paid_amount if row else 0, currency),
                    t("overview.col_refund_count"): f"{row.refund_count if row else 0:,}",
                    t("overview.col_refund_amount"): money(row.refund_amount if row else 0, currency),
                    t("overview.col_net"): money(row.net_amount if row else 0, currency),
                }
            )
        numeric = ("col_paid_count", "col_paid_amount", "col_refund_count", "col_refund_amount", "col_net")
        st.markdown(f"**{t('overview.currency_heading', currency=plain(currency))}**")
        st.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            width="stretch",
            column_config={t(f"overview.{key}"): right for key in numeric},
        )


def _alerts(data: figures.Overview) -> None:
    st.subheader(t("overview.alerts_heading"))
    columns = st.columns(len(data.open_alerts))
    for column, (severity, count) in zip(columns, data.open_alerts.items(), strict=True):
        column.metric(t(f"overview.severity_{severity}"), f"{count:,}")
    if not any(data.open_alerts.values()):
        st.caption(t("overview.alerts_none"))
    elif st.button(t("overview.open_alerts"), key="overview_open_alerts"):
        st.switch_page("views/alerts.py")


def _last_webhook(data: figures.Overview) -> None:
    st.subheader(t("overview.webhook_heading"))
    hook = data.last_webhook
    if hook is None:
        st.caption(t("overview.webhook_none"))
        return
    result = t(f"overview.webhook_result_{hook.result}")
    color = {"processed": "green", "ignored": "gray", "received": "blue"}.get(hook.result, "red")
    st.markdown(
        f":{color}-badge[{t('overview.webhook_last', time=kst(hook.received_at, seconds=True), result=result)}]"
    )
    if hook.imp_uid:
        claimed = hook.claimed_status or "—"
        status = status_label(claimed) if claimed in STATUS_COLORS else claimed
        st.caption(t("overview.webhook_payment", imp_uid=plain(hook.imp_uid), status=plain(status)))


def _chart(data: figures.Overview) -> None:
    st.subheader(t("overview.chart_heading"))
    st.caption(t("overview.chart_caption", start=data.chart_start, end=data.chart_end))
    currencies = sorted({d.currency for d in data.daily})
    if not currencies:
        st.caption(t("overview.chart_empty"))
        return
    days = [data.chart_start + timedelta(days=n) for n in range((data.chart_end - data.chart_start).days + 1)]
    for column, currency in zip(st.columns(len(currencies)), currencies, strict=True):
        amounts = {d.day: d.amount for d in data.daily if d.currency == currency}
        label = f"{t('overview.chart_amount')} ({currency})"
        # Floats only here, for the chart's y-axis; every figure shown as text stays exact.
        frame = pd.DataFrame({"day": [str(day) for day in days], label: [float(amounts.get(d, 0)) for d in days]})
        with column:
            st.markdown(f"**{plain(currency)}**")
            st.bar_chart(frame, x="day", y=label, x_label="", y_label=label, height=260)


st.title(t("overview.title"))
if st.session_state.pop("overview_stale", False):  # a test payment was just made in this session
    _overview.clear()
data = _overview(rt.db.url, rt, actor)
head, refresh = st.columns([5, 1])
head.caption(t("overview.as_of", time=kst(data.generated_at, seconds=True)))
if refresh.button(t("overview.refresh"), key="overview_refresh"):
    _overview.clear()
    st.rerun()

if not data.has_payments:
    can_test = actor.can(Permission.TEST_PAYMENT) and not rt.settings.is_live
    st.info(t("overview.empty") if can_test else t("overview.empty_viewer"))
    if can_test and st.button(t("overview.run_test_payment"), type="primary", key="overview_test_payment"):
        st.switch_page("views/test_payment.py")
else:
    _today_metrics(data)
    _period_tables(data)
_alerts(data)
_last_webhook(data)
if data.has_payments:
    _chart(data)
