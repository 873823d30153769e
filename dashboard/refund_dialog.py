"""One refund in one dialog, from where the payment is (the detail page, a payments-list row).

`open_refund(name, rt, actor, imp_uid)` when the operator clicks a refund action: PortOne's live
remainder is asked for (services.refunds.desk.refund_quote), the dialog's inputs start from it
(the whole remainder, the first preset reason) and the dialog opens with ONE idempotency key for
its life (dashboard.components intents): a double click or a rerun replays the first answer.
`render(name, rt, actor)` draws it while open; confirming refunds (or files the request for a
second operator above the approval threshold), closes the dialog and reruns the page, which then
shows the new figures and the outcome (`show_result`). A refusal stays in the dialog, and the
next try is a new intent with a new key.

Also the refund words shared with the refunds page: `explain`, `describe`, `account_inputs`.
"""

from __future__ import annotations

from decimal import Decimal

import streamlit as st

from dashboard import components as ui
from dashboard.auth import holding
from dashboard.format import plain
from dashboard.i18n import current_language, t
from services.auth.access import Actor, Permission
from services.core.errors import (
    ApprovalDecisionChanged,
    InvalidRequest,
    PartialRefundRefused,
    PaymentsError,
    RefundExceedsRemaining,
)
from services.core.money import InvalidAmount, minor_unit_exponent, parse_typed_amount
from services.portone import banks
from services.refunds import desk, reasons
from services.refunds.outcomes import DeskResult, RefundOutcome, outcome_of_error
from services.runtime import Runtime

# -- words shared with the refunds page ----------------------------------------------------------


def explain(exc: PaymentsError) -> str:
    """A domain error in plain words, with PortOne's own message where it gave one."""
    amount = remaining = ""
    if isinstance(exc, RefundExceedsRemaining):
        amount = ui.money_text(exc.requested, exc.currency)
        remaining = ui.money_text(exc.remaining, exc.currency)
    message = plain(exc.portone_message if isinstance(exc, PartialRefundRefused) else exc)
    return t(f"refunds.outcome_{outcome_of_error(exc)}", message=message, amount=amount, remaining=remaining)


def describe(outcome: DeskResult) -> tuple[str, str]:
    """(streamlit message kind, text) for a desk outcome."""
    money = ui.money_text(outcome.amount, outcome.currency) if outcome.amount is not None else t("refunds.whole")
    text = t(
        f"refunds.outcome_{outcome.outcome}",
        amount=money,
        remaining=ui.money_text(outcome.remaining, outcome.currency),
        message=plain(outcome.message),
    )
    if outcome.refund is not None and outcome.refund.pg_message:  # V2 PG_PROVIDER: the PG's words, and advice
        text += " " + t("refunds.pg_error", message=plain(outcome.refund.pg_message))
    if outcome.replayed:
        text += " " + t("refunds.replayed")
    kind = {
        RefundOutcome.REFUNDED: "success",
        RefundOutcome.AWAITING_APPROVAL: "info",
        RefundOutcome.UNKNOWN: "warning",
    }
    return kind.get(outcome.outcome, "error"), text


def bank_label(code: str) -> str:
    """The picker's words for a bank: its Korean name (with the English one on the English page)."""
    bank = banks.BY_CODE[code]
    if current_language() == "en":
        return f"{bank.name_en} · {bank.name_ko} ({bank.code})"
    return f"{bank.name_ko} ({bank.code})"


ACCOUNT_FIELDS = ("refund_bank", "refund_holder", "refund_number")


def forget_typed(prefix: str, subject: str, *names: str) -> None:
    """What was typed under `prefix` belongs to one payment or request (`subject`): when another
    is shown, those inputs start empty (one customer's account must never carry over to the next)."""
    marker = f"{prefix}.typed_for"
    if st.session_state.get(marker) != subject:
        for name in names:
            st.session_state.pop(f"{prefix}.{name}", None)
        st.session_state[marker] = subject


def account_inputs(prefix: str, subject: str) -> dict[str, str]:
    """Bank picker, holder and number of the customer's refund account (a virtual-account payment),
    empty for each new `subject` (the payment or request they are for)."""
    forget_typed(prefix, subject, *ACCOUNT_FIELDS)
    cols = st.columns([2, 2, 3])
    labels = {bank.code: bank_label(bank.code) for bank in banks.BANKS}  # in this run's language
    code = cols[0].selectbox(
        t("refunds.refund_bank"),
        list(labels),
        index=None,
        format_func=labels.__getitem__,
        placeholder=t("refunds.refund_bank_placeholder"),
        key=f"{prefix}.refund_bank",
    )
    holder = cols[1].text_input(t("refunds.refund_holder"), key=f"{prefix}.refund_holder", max_chars=50)
    number = cols[2].text_input(
        t("refunds.refund_number"), key=f"{prefix}.refund_number", max_chars=40, help=t("refunds.refund_number_help")
    )
    return {"bank": code or "", "holder": holder, "number": number}


# -- the dialog ----------------------------------------------------------------------------------


def _result_key(name: str) -> str:
    return f"{name}.result"


def _error_key(name: str) -> str:
    return f"{name}.error"


def open_refund(name: str, rt: Runtime, actor: Actor, imp_uid: str) -> bool:
    """Open the refund dialog `name` for a payment (the refund action's click). False, with the
    reason kept for `show_result`, when the payment cannot be quoted."""
    try:
        quote = desk.refund_quote(rt, actor=actor, identifier=imp_uid)
    except PaymentsError as exc:
        st.session_state[_result_key(name)] = ("error", explain(exc))
        return False
    if quote.remaining <= 0:
        st.session_state[_result_key(name)] = ("info", t("refunds.nothing_left"))
        return False
    # The same payment's unsettled intent (cancelled, or sent with no answer) keeps its key, and so
    # what was sent under it: asked again, the same refund settles the first attempt.
    earlier = ui.current_intent(name)
    sent: dict[str, str] | None = None
    if earlier is not None and not earlier.settled and earlier.fingerprint == quote.imp_uid:
        sent = earlier.payload.get("sent")
    ui.open_intent(name, {"quote": quote, **({"sent": sent} if sent else {})}, fingerprint=quote.imp_uid)
    for field in ("other", *ACCOUNT_FIELDS):
        st.session_state.pop(f"{name}.{field}", None)
    st.session_state[f"{name}.amount"] = sent["amount"] if sent else str(quote.remaining)
    st.session_state[f"{name}.reason"] = sent["reason"] if sent else reasons.PRESETS[0].value
    if sent and sent.get("other"):
        st.session_state[f"{name}.other"] = sent["other"]
    st.session_state.pop(f"{name}.typed_for", None)
    st.session_state.pop(_error_key(name), None)
    return True


def show_result(name: str) -> None:
    """The outcome of the dialog's last confirm (once, after the page reran), as a message and a toast."""
    result: tuple[str, str] | None = st.session_state.pop(_result_key(name), None)
    if result:
        kind, text = result
        getattr(st, kind)(text)
        if kind in ("success", "info"):
            st.toast(text, icon=":material/check_circle:" if kind == "success" else ":material/hourglass_top:")


def quote_figures(quote: desk.RefundQuote) -> None:
    """Paid, already refunded, refundable: the three figures a refund is decided on (and whether they
    are PortOne's live ones)."""
    figures = st.columns(3)
    figures[0].metric(t("refunds.paid"), ui.money_text(quote.amount, quote.currency))
    figures[1].metric(t("refunds.already"), ui.money_text(quote.cancel_amount, quote.currency))
    figures[2].metric(t("refunds.remaining"), ui.money_text(quote.remaining, quote.currency))
    if not quote.from_portone:
        st.warning(t("refunds.quote_offline"))


def _typed_amount(text: str, quote: desk.RefundQuote) -> Decimal | None:
    try:
        return parse_typed_amount(text, quote.currency)
    except InvalidAmount:
        return None


def _needs_approval(quote: desk.RefundQuote, amount: Decimal) -> bool:
    """The desk's rule (services.refunds.approvals.needs_approval) on the quote's figures."""
    return quote.approval_threshold is None or quote.refunded_alone + amount > quote.approval_threshold


def _body(name: str, rt: Runtime, actor: Actor, intent: ui.Intent) -> None:
    quote: desk.RefundQuote = intent.payload["quote"]
    st.markdown(
        t(
            "refund_dialog.payment",
            imp_uid=plain(quote.imp_uid),
            merchant_uid=plain(quote.merchant_uid),
            buyer=plain(quote.buyer_name or "—"),
        )
    )
    quote_figures(quote)
    if quote.full_only:  # PortOne refunds it in full only: the whole remainder, not editable
        st.info(t(f"refunds.full_only_{quote.full_only}"))
        st.session_state[f"{name}.amount"] = str(quote.remaining)
    amount_text = st.text_input(
        t("refund_dialog.amount"),
        key=f"{name}.amount",
        help=t("refund_dialog.amount_help"),
        disabled=bool(quote.full_only),
    )
    labels = {preset.value: t(f"refund_dialog.reason_{preset}") for preset in reasons.PRESETS}  # this run's language
    code = st.radio(
        t("refund_dialog.reason"), list(labels), key=f"{name}.reason", format_func=labels.__getitem__, horizontal=True
    )
    other = ""
    if code == reasons.ReasonPreset.OTHER:
        other = st.text_input(
            t("refund_dialog.other"),
            key=f"{name}.other",
            max_chars=500,
            placeholder=t("refund_dialog.other_placeholder"),
        )
    typed_account: dict[str, str] | None = None
    if quote.needs_refund_account:
        st.info(t("refunds.vbank_explain"))
        typed_account = account_inputs(name, quote.imp_uid)
    amount = _typed_amount(amount_text, quote)
    approval = _needs_approval(quote, amount if amount is not None else quote.remaining)
    if approval:
        st.warning(t("refund_dialog.needs_approval"))
    left, right = st.columns(2)
    confirmed = left.button(
        t("refund_dialog.confirm_approval" if approval else "refund_dialog.confirm"),
        key=f"{name}.confirm",
        type="primary",
        width="stretch",
    )
    if right.button(t("components.cancel"), key=f"{name}.cancel", width="stretch"):
        ui.close_dialog(name)
        st.rerun()
    error = st.session_state.pop(_error_key(name), None)
    if confirmed:
        error = _confirm(name, rt, actor, intent, amount=amount, code=code, other=other, account=typed_account)
    if error:
        st.error(error)


def _confirm(
    name: str,
    rt: Runtime,
    actor: Actor,
    intent: ui.Intent,
    *,
    amount: Decimal | None,
    code: str,
    other: str,
    account: dict[str, str] | None,
) -> str | None:
    """Refund (or file for approval); on an outcome close and rerun, else the error to show."""
    quote: desk.RefundQuote = intent.payload["quote"]
    if amount is None:
        return t(f"refunds.bad_amount_{'whole' if minor_unit_exponent(quote.currency) == 0 else 'cents'}")
    if amount > quote.remaining:
        return t("refunds.too_much", remaining=ui.money_text(quote.remaining, quote.currency))
    if code == reasons.ReasonPreset.OTHER and not other.strip():
        return t("refund_dialog.other_needed")
    if account is not None and not all(value.strip() for value in account.values()):
        return t("refunds.outcome_account_needed")
    try:
        parsed = banks.refund_account(account)
    except InvalidRequest as exc:
        return t("refunds.bad_account", message=plain(exc))
    intent.payload["sent"] = {"amount": str(amount), "reason": code, "other": other}
    try:
        reason = reasons.reason_text(code, other)
        outcome = desk.request_refund(
            rt,
            actor=actor,
            imp_uid=quote.imp_uid,
            amount=amount,
            reason=reason,
            idempotency_key=intent.key,
            refund_account=parsed,
            expect_approval=_needs_approval(quote, amount),  # what the dialog told the operator
        )
    except ApprovalDecisionChanged:
        _next_try(name, intent, rt, actor)
        return t("refund_dialog.approval_changed")
    except PaymentsError as exc:
        _next_try(name, intent, rt, actor)
        return explain(exc)
    kind, text = describe(outcome)
    if kind == "error":  # PortOne's final no, or an earlier answer replayed: stay, next try is new
        _next_try(name, intent, rt, actor)
        return text
    if outcome.outcome != RefundOutcome.UNKNOWN:  # unknown: the same intent keeps its key
        ui.settle_intent(name)
    st.session_state[_result_key(name)] = (kind, text)
    ui.close_dialog(name)
    st.rerun()
    return None  # pragma: no cover - st.rerun does not return


def _next_try(name: str, intent: ui.Intent, rt: Runtime, actor: Actor) -> None:
    """A definitive refusal ends this intent: the dialog stays open with a new key for the next try,
    and the figures read again (what is left, what this operator refunded alone may have changed)."""
    payload = intent.payload
    try:
        payload = {**payload, "quote": desk.refund_quote(rt, actor=actor, identifier=payload["quote"].imp_uid)}
    except PaymentsError:
        pass  # the old figures; the desk checks again on the next confirm
    ui.settle_intent(name)
    ui.open_intent(name, payload, fingerprint=intent.fingerprint)


def render(name: str, rt: Runtime, actor: Actor) -> None:
    """Draw the refund dialog `name` while it is open."""
    intent = ui.current_intent(name)
    if not ui.dialog_is_open(name) or intent is None:
        return

    @st.dialog(t("refund_dialog.title"), width="large", dismissible=False)
    def _dialog() -> None:
        # The intent of this run: a refusal replaces it (a new key) within the dialog's fragment.
        current = ui.current_intent(name) or intent
        still = holding(Permission.REFUND)  # this run may be the dialog's alone: ask again who is signed in
        if still is None or still.username != actor.username:
            ui.close_dialog(name)
            st.rerun(scope="app")
        _body(name, rt, still, current)

    _dialog()
