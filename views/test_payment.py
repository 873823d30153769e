"""Test payment: sandbox mode pays end to end here; test mode creates the order and explains the
browser's part; live mode offers nothing."""

from __future__ import annotations

import streamlit as st

from dashboard.auth import gate
from dashboard.format import badge, money, plain
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.auth.access import Permission
from services.core.errors import (
    Forbidden,
    ForgeryDetected,
    GatewayRejected,
    GatewayUnavailable,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    PaymentsError,
)
from services.payments import test_payment as tp

actor = gate(Permission.TEST_PAYMENT)
rt = get_runtime()
mode = rt.settings.portone_mode
_RESULT, _ORDER, _VERIFIED = "test_payment_result", "test_payment_order", "test_payment_verified"


def _explain(exc: PaymentsError) -> str:
    if isinstance(exc, tp.LiveModeRefused):
        return t("test_payment.err_live")
    if isinstance(exc, tp.SandboxUnavailable):
        return t("test_payment.err_no_sandbox")
    if isinstance(exc, Forbidden):
        return t("test_payment.err_forbidden")
    if isinstance(exc, InvalidRequest):
        return t("test_payment.err_invalid", detail=plain(exc))
    if isinstance(exc, NotFound):
        return t("test_payment.err_not_found")
    if isinstance(exc, ForgeryDetected):
        return t("test_payment.err_forgery")
    if isinstance(exc, GatewayUnavailable | OutcomeUnknown):
        return t("app.unavailable")
    if isinstance(exc, GatewayRejected):
        return t("test_payment.err_rejected", detail=plain(exc))
    return t("app.error_generic", message=plain(exc))


def _open_detail(imp_uid: str) -> None:
    if st.button(t("test_payment.view_detail"), key="test_payment_detail", type="primary"):
        st.session_state["detail_imp_uid"] = imp_uid
        st.session_state["payment_detail.imp_uid"] = imp_uid  # the key the detail page reads
        st.switch_page("views/payment_detail.py")


def _order_form(submit_label: str, *, with_card: bool) -> tuple[bool, str, str, str, str, str]:
    fees = rt.settings.fee_table
    with st.form("test_payment_form"):
        currency = st.selectbox(
            t("test_payment.currency"),
            list(fees),
            format_func=lambda c: t("test_payment.currency_option", currency=c, amount=money(fees[c], c)),
            key="test_payment_currency",
        )
        buyer_name = st.text_input(t("test_payment.buyer_name"), value=tp.DEFAULT_BUYER_NAME, key="test_payment_name")
        buyer_email = st.text_input(
            t("test_payment.buyer_email"), value=tp.DEFAULT_BUYER_EMAIL, key="test_payment_email"
        )
        card, method = tp.TEST_CARD, "card"
        if with_card:
            labels = {m: t(f"test_payment.method_{m}") for m in tp.PAY_METHODS}  # in this run's language
            method = st.radio(
                t("test_payment.method"),
                list(tp.PAY_METHODS),
                format_func=labels.__getitem__,
                horizontal=True,
                key="test_payment_method",
            )
            card = st.radio(
                t("test_payment.card"),
                [tp.TEST_CARD, tp.DECLINED_TEST_CARD],
                captions=[t("test_payment.card_approved"), t("test_payment.card_declined")],
                key="test_payment_card",
            )
        submitted = st.form_submit_button(submit_label, type="primary", key="test_payment_submit")
    return submitted, currency, buyer_name, buyer_email, card, method


def _sandbox() -> None:
    st.caption(t("test_payment.intro_sandbox"))
    submitted, currency, buyer_name, buyer_email, card, method = _order_form(t("test_payment.pay"), with_card=True)
    if submitted:
        try:
            with st.spinner(t("test_payment.paying")):
                st.session_state[_RESULT] = tp.run_sandbox_payment(
                    rt,
                    actor=actor,
                    currency=currency,
                    card_number=card,
                    buyer_name=buyer_name,
                    buyer_email=buyer_email,
                    pay_method=method,
                )
            st.session_state["overview_stale"] = True  # the overview drops its 30 s cache on the next visit
        except PaymentsError as exc:
            st.session_state.pop(_RESULT, None)
            st.error(_explain(exc))
    result: tp.SandboxPayment | None = st.session_state.get(_RESULT)
    if result is None:
        return
    if result.status == "ready" and result.pay_method == "vbank" and result.imp_uid:
        # The virtual account is issued; the customer's deposit makes it paid (PortOne: vbank ready -> paid).
        st.info(t("test_payment.vbank_issued"))
        if st.button(t("test_payment.deposit"), key="test_payment_deposit", type="primary"):
            try:
                st.session_state[_RESULT] = tp.deposit_in_sandbox(rt, actor=actor, payment=result)
                st.session_state["overview_stale"] = True
            except PaymentsError as exc:
                st.error(_explain(exc))
            else:
                st.rerun()
    st.subheader(t("test_payment.result_heading"))
    if result.status == "paid":
        st.success(t("test_payment.approved"))
    elif result.status == "ready" and result.imp_uid:
        pass  # waiting for the deposit (said above)
    elif result.imp_uid:
        st.error(t("test_payment.declined", reason=plain(result.error_msg or result.status)))
    else:
        st.error(t("test_payment.no_payment", reason=plain(result.error_msg or "—")))
    if result.status:
        st.markdown(f"{t('test_payment.status')}: {badge(result.status)}")
    st.markdown(f"{t('test_payment.amount')}: **{money(result.order.amount, result.order.currency)}**")
    st.markdown(f"{t('test_payment.merchant_uid')}: {plain(result.order.merchant_uid)}")
    if result.imp_uid:
        st.markdown(f"{t('test_payment.imp_uid')}: {plain(result.imp_uid)}")
        _open_detail(result.imp_uid)


def _test_mode() -> None:
    st.caption(t("test_payment.intro_test"))
    submitted, currency, buyer_name, buyer_email, _, _ = _order_form(t("test_payment.create_order"), with_card=False)
    if submitted:
        try:
            order = tp.create_test_order(
                rt, actor=actor, currency=currency, buyer_name=buyer_name, buyer_email=buyer_email
            )
        except PaymentsError as exc:
            st.error(_explain(exc))
        else:
            st.session_state[_ORDER] = (
                order,
                tp.request_pay_script(rt, order, buyer_name=buyer_name, buyer_email=buyer_email),
            )
            st.session_state.pop(_VERIFIED, None)
    if _ORDER not in st.session_state:
        return
    order, script = st.session_state[_ORDER]
    st.subheader(t("test_payment.order_heading"))
    st.markdown(f"{t('test_payment.merchant_uid')}: {plain(order.merchant_uid)}")
    st.markdown(f"{t('test_payment.amount')}: **{money(order.amount, order.currency)}**")
    st.markdown(t("test_payment.instructions", card=tp.TEST_CARD, expiry=tp.TEST_CARD_EXPIRY, cvc=tp.TEST_CARD_CVC))
    st.code(script, language="javascript")
    with st.form("test_payment_complete"):
        imp_uid = st.text_input(t("test_payment.complete_imp_uid"), key="test_payment_imp_uid")
        confirm = st.form_submit_button(t("test_payment.complete_submit"), key="test_payment_confirm")
    if confirm:
        try:
            verification = tp.complete_browser_payment(
                rt, actor=actor, imp_uid=imp_uid.strip(), merchant_uid=order.merchant_uid
            )
        except PaymentsError as exc:
            st.error(_explain(exc))
        else:
            st.session_state[_VERIFIED] = verification
            st.session_state["overview_stale"] = True
    verified = st.session_state.get(_VERIFIED)
    if verified is not None and verified.merchant_uid == order.merchant_uid:
        st.success(t("test_payment.completed", status=t(f"status.{verified.status}")))
        st.markdown(f"{t('test_payment.status')}: {badge(str(verified.status))}")
        _open_detail(verified.imp_uid)


st.title(t("test_payment.title"))
if mode == "live":
    st.warning(t("test_payment.live"))
elif mode == "sandbox":
    _sandbox()
else:
    _test_mode()
