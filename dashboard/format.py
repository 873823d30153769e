"""Money, time and status as ops staff read them: ₩50,000, $38.50, KST with the date; and text from
outside (PortOne, buyers, webhook senders, uploads, links) made inert wherever Streamlit reads
Markdown (`plain`)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from dashboard.i18n import t
from services.core.kst import KST
from services.core.money import minor_unit_exponent
from services.reconciliation.schedule import ScheduleState

SYMBOLS = {"KRW": "₩", "USD": "$", "EUR": "€", "JPY": "¥", "GBP": "£", "CNY": "CN¥"}
STATUS_COLORS = {
    "paid": "green",
    "partially_refunded": "orange",
    "cancelled": "gray",
    "refunded": "gray",
    "failed": "red",
    "ready": "blue",
    "awaiting_deposit": "blue",
    "pending": "blue",
    "forgery": "red",
    "succeeded": "green",
    "rejected": "red",
    "unknown": "violet",
    "open": "red",
    "acknowledged": "orange",
    "resolved": "green",
    "executing": "blue",
}


# Every ASCII punctuation character: CommonMark lets each be escaped with a backslash, and between
# them they start every Markdown construct (links, images, HTML, code, emphasis, headings, lists,
# tables), every GitHub-flavoured autolink (`https:`, `www.`, `a@b.c`) and Streamlit's own
# directives (`:red[...]`, `:material/icon:`, `$math$`).
_MARKDOWN_ACTIVE = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: object) -> str:
    """`text` shown as it is by anything Streamlit renders as Markdown (st.markdown, captions,
    alerts, headings, toasts, labels, help, metric values): every Markdown-active character is
    escaped, so a link, image or HTML tag in it stays text. Use it for every value that comes from
    outside (PortOne, buyers, webhook senders, uploaded files, query parameters, error messages
    quoting them) before it meets Markdown; tables, st.text and st.code need nothing."""
    if text is None:
        return ""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", str(text))


def web_url(url: str | None) -> str | None:
    """`url` if it is an http(s) address (a receipt link from PortOne), else None: never a
    javascript: or data: link on a button."""
    if url and url.strip().lower().startswith(("https://", "http://")):
        return url.strip()
    return None


def money(amount: Decimal | None, currency: str) -> str:
    if amount is None:
        return "—"
    try:
        places = minor_unit_exponent(currency)
    except ValueError:
        places = 2
    text = f"{abs(amount):,.{places}f}"
    sign = "-" if amount < 0 else ""
    symbol = SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


_AMOUNT_WITH_CURRENCY = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?) ([A-Z]{3})\b")


def amounts_in(text: str | None) -> str:
    """Amounts the services write as `50000 KRW` (alert values, messages) shown as `₩50,000`."""
    if not text:
        return "—"
    return _AMOUNT_WITH_CURRENCY.sub(lambda m: money(Decimal(m.group(1)), m.group(2)), text)


def kst(moment: datetime | None, *, seconds: bool = False) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def payment_state(status: str, cancel_amount: Decimal, verified: bool = True) -> str:
    """Our display state: PortOne's status refined by partial refunds and verification."""
    if not verified and status in ("paid", "cancelled"):
        return "forgery"
    if status == "paid" and cancel_amount > 0:
        return "partially_refunded"
    return status


def status_label(state: str) -> str:
    return t(f"status.{state}")


def badge(state: str) -> str:
    """Markdown for a coloured status badge with words (st.markdown renders it). An unknown state
    (PortOne's word, shown as it is) is escaped."""
    color = STATUS_COLORS.get(state, "gray")
    return f":{color}-badge[{plain(status_label(state))}]"


def scheduled_run_line(state: ScheduleState) -> str:
    """The scheduled reconciliation in one line: its cadence, and its last run's time and outcome."""
    every, window = state.every.total_seconds() / 60, plain(state.window)
    run = state.last_run
    if run is None:
        return t("reconcile.schedule_never", every=every, window=window)
    repaired = sum(c.repaired for c in run.counts.values())
    outcome = t(f"reconcile.outcome_{run.status}", checked=run.payments_checked, new=run.new_total, repaired=repaired)
    return t("reconcile.schedule_last", every=every, window=window, time=kst(run.started_at), outcome=outcome)
