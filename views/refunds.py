"""Refunds: one payment (from an imp_uid / merchant_uid, or the detail page), bulk refunds (rows
picked on the payments page or a CSV), and the approvals queue (maker-checker).

Every refund goes through services.refunds (desk, bulk, approvals); each confirmed intent carries
ONE idempotency key made when its dialog opens (dashboard.components), so double clicks and reruns
never refund twice."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard.auth import gate
from dashboard.format import badge, kst, plain, status_label
from dashboard.i18n import t
from dashboard.refund_dialog import account_inputs, describe, explain, forget_typed, quote_figures
from dashboard.runtime import get_runtime
from services.auth.access import Permission
from services.core.errors import InvalidRequest, PaymentsError
from services.core.money import InvalidAmount, minor_unit_exponent, parse_typed_amount
from services.portone import banks
from services.refunds import approvals, desk
from services.refunds import bulk as bulk_refunds
from services.refunds.outcomes import RefundOutcome

actor = gate(Permission.REFUND)
rt = get_runtime()
st.title(t("refunds.title"))


def show(message: tuple[str, str] | None) -> None:
    if message:
        getattr(st, message[0])(message[1])


single, bulk, queue = st.tabs([t("refunds.tab_single"), t("refunds.tab_bulk"), t("refunds.tab_queue")])

# -- one payment ---------------------------------------------------------------------------------
with single:
    prefill = st.session_state.pop("refunds.prefill", None) or st.query_params.pop("imp_uid", None)
    if prefill:
        st.session_state["refunds.identifier"] = prefill
        st.session_state["refunds.load_now"] = True
    identifier = st.text_input(
        t("refunds.identifier"), key="refunds.identifier", placeholder=t("refunds.identifier_placeholder")
    )
    clicked = st.button(t("refunds.load"), key="refunds.load")
    if (clicked or st.session_state.pop("refunds.load_now", False)) and identifier.strip():
        if clicked:
            st.session_state["refunds.single_result"] = None
        try:
            quote = desk.refund_quote(rt, actor=actor, identifier=identifier)
            st.session_state["refunds.quote"] = quote
            st.session_state["refunds.amount"] = str(quote.remaining)
        except PaymentsError as exc:
            st.session_state["refunds.quote"] = None
            st.error(explain(exc))
    quote: desk.RefundQuote | None = st.session_state.get("refunds.quote")
    show(st.session_state.get("refunds.single_result"))
    if quote is None:
        st.info(t("refunds.single_empty"))
    else:
        st.markdown(
            f"**{plain(quote.imp_uid)}** · {plain(quote.merchant_uid)} · {plain(quote.buyer_name)} · "
            f"{badge(quote.status)} · {kst(quote.paid_at)}"
        )
        quote_figures(quote)
        if quote.remaining <= 0:
            st.info(t("refunds.nothing_left"))
        else:
            if quote.full_only:  # PortOne refunds it in full only: the whole remainder, not editable
                st.info(t(f"refunds.full_only_{quote.full_only}"))
                st.session_state["refunds.amount"] = str(quote.remaining)
            amount_text = st.text_input(
                t("refunds.amount"),
                key="refunds.amount",
                help=t("refunds.amount_help"),
                disabled=bool(quote.full_only),
            )
            forget_typed("refunds", f"{quote.imp_uid}:{quote.remaining}", "reason")
            reason = st.text_area(t("refunds.reason"), key="refunds.reason", max_chars=500)
            typed_account: dict[str, str] | None = None
            if quote.needs_refund_account:
                st.info(t("refunds.vbank_explain"))
                typed_account = account_inputs("refunds", f"{quote.imp_uid}:{quote.remaining}")
            if st.button(t("refunds.start"), key="refunds.start", type="primary"):
                try:
                    amount = parse_typed_amount(amount_text, quote.currency)
                except InvalidAmount:
                    amount = None
                if amount is None:
                    st.error(
                        t(f"refunds.bad_amount_{'whole' if minor_unit_exponent(quote.currency) == 0 else 'cents'}")
                    )
                elif amount > quote.remaining:
                    st.error(t("refunds.too_much", remaining=ui.money_text(quote.remaining, quote.currency)))
                elif not reason.strip():
                    st.error(t("refunds.need_reason"))
                elif typed_account is not None and not all(v.strip() for v in typed_account.values()):
                    st.error(t("refunds.outcome_account_needed"))
                else:
                    try:
                        account = banks.refund_account(typed_account)
                    except InvalidRequest as exc:
                        st.error(t("refunds.bad_account", message=plain(exc)))
                    else:
                        payload = {"quote": quote, "amount": amount, "reason": reason.strip(), "account": account}
                        # The account is part of the intent: another account is another refund request.
                        account_part = hashlib.sha256(repr((account, account and account.number)).encode()).hexdigest()
                        ui.open_intent(
                            "refunds.single",
                            payload,
                            fingerprint=f"{quote.imp_uid}|{amount}|{reason.strip()}|{account_part}",
                        )


def single_body(intent: ui.Intent) -> None:
    quote: desk.RefundQuote = intent.payload["quote"]
    amount: Decimal = intent.payload["amount"]
    st.markdown(t("refunds.confirm_payment", imp_uid=plain(quote.imp_uid), merchant_uid=plain(quote.merchant_uid)))
    st.markdown(t("refunds.confirm_amount", amount=ui.money_text(amount, quote.currency)))
    st.markdown(t("refunds.confirm_after", remaining=ui.money_text(quote.remaining - amount, quote.currency)))
    st.caption(t("refunds.confirm_reason", reason=plain(intent.payload["reason"])))
    account: banks.RefundAccount | None = intent.payload.get("account")
    if account is not None:  # the number masked: the dialog shows what goes where, not the number
        st.markdown(t("refunds.confirm_account", account=plain(account.described())))
    if quote.approval_threshold is None or quote.refunded_alone + amount > quote.approval_threshold:
        st.warning(t("refunds.confirm_needs_approval"))


def single_confirm(intent: ui.Intent) -> None:
    quote: desk.RefundQuote = intent.payload["quote"]
    try:
        outcome = desk.request_refund(
            rt,
            actor=actor,
            imp_uid=quote.imp_uid,
            amount=intent.payload["amount"],
            reason=intent.payload["reason"],
            idempotency_key=intent.key,
            refund_account=intent.payload.get("account"),
        )
    except PaymentsError as exc:
        st.session_state["refunds.single_result"] = ("error", explain(exc))
        ui.settle_intent("refunds.single")  # nothing was sent, or PortOne gave a final answer
    else:
        st.session_state["refunds.single_result"] = describe(outcome)
        if outcome.outcome != RefundOutcome.UNKNOWN:  # unknown: the same intent keeps its key
            ui.settle_intent("refunds.single")
    st.session_state["refunds.load_now"] = True  # show the new remainder


ui.confirm_dialog(
    "refunds.single",
    title=t("refunds.confirm_title"),
    body=single_body,
    on_confirm=single_confirm,
    permission=Permission.REFUND,
    confirm_label=t("refunds.confirm_button"),
)

# -- bulk ------------------------------------------------------------------------------------------
with bulk:
    failure = st.session_state.pop("refunds.bulk_error", None)
    if failure:
        st.error(failure)
    picked = st.session_state.get("refunds.bulk_imp_uids") or []
    rows: list[bulk_refunds.BulkInputRow] = []
    if picked:
        st.info(t("refunds.bulk_picked", count=len(picked)))
        if st.button(t("refunds.bulk_clear"), key="refunds.bulk_clear"):
            st.session_state["refunds.bulk_imp_uids"] = []
            st.rerun()
        rows = [bulk_refunds.BulkInputRow(line=n, identifier=uid) for n, uid in enumerate(picked, start=1)]
    else:
        upload = st.file_uploader(
            t("refunds.bulk_file"), type=["csv"], key="refunds.bulk_file", help=t("refunds.bulk_file_help")
        )
        if upload is not None:
            try:
                rows = bulk_refunds.parse_bulk_csv(upload.getvalue())
            except PaymentsError as exc:
                st.error(t("refunds.bulk_bad_file", message=plain(exc)))
    bulk_reason = st.text_input(t("refunds.bulk_reason"), key="refunds.bulk_reason", help=t("refunds.bulk_reason_help"))
    if not rows:
        st.caption(t("refunds.bulk_empty"))
    elif st.button(t("refunds.bulk_preview"), key="refunds.bulk_preview_button"):
        try:
            st.session_state["refunds.bulk_preview"] = (
                rows,
                bulk_reason,
                bulk_refunds.preview_bulk(rt, actor=actor, rows=rows, default_reason=bulk_reason),
            )
            st.session_state["refunds.bulk_results"] = None
        except PaymentsError as exc:
            st.error(explain(exc))
    previewed = st.session_state.get("refunds.bulk_preview")
    if previewed is not None and rows and previewed[0] == rows and previewed[1] == bulk_reason:
        preview: bulk_refunds.BulkPreview = previewed[2]
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "line": r.line,
                        "identifier": r.identifier,
                        "found": "✅" if r.imp_uid else "❌",
                        "buyer": r.buyer_name or "",
                        "remaining": ui.money_text(r.remaining, r.currency),
                        "amount": ui.money_text(r.amount, r.currency),
                        "reason": r.reason,
                        "account": r.refund_account or "",  # bank, masked number, holder
                        "check": t("refunds.check_ready") if r.check is None else t(f"refunds.check_{r.check}"),
                    }
                    for r in preview.rows
                ]
            ),
            hide_index=True,
            width="stretch",
            key="refunds.bulk_preview_table",
            column_config={
                "line": st.column_config.NumberColumn(t("refunds.col_line"), width="small"),
                "identifier": st.column_config.TextColumn(t("refunds.col_identifier")),
                "found": st.column_config.TextColumn(t("refunds.col_found"), width="small"),
                "buyer": st.column_config.TextColumn(t("refunds.col_buyer")),
                "remaining": ui.money_column(t("refunds.col_remaining")),
                "amount": ui.money_column(t("refunds.col_amount")),
                "reason": st.column_config.TextColumn(t("refunds.col_reason")),
                "account": st.column_config.TextColumn(t("refunds.col_refund_account")),
                "check": st.column_config.TextColumn(t("refunds.col_check")),
            },
        )
        totals = ", ".join(ui.money_text(total, currency) for currency, total in preview.totals.items())
        st.markdown(t("refunds.bulk_summary", ready=len(preview.ready), total=len(preview.rows), totals=totals or "—"))
        if preview.needs_approval:
            st.warning(t("refunds.bulk_needs_approval"))
        if preview.ready and st.button(t("refunds.bulk_start"), key="refunds.bulk_start", type="primary"):
            fingerprint = hashlib.sha256(repr((rows, bulk_reason)).encode()).hexdigest()
            ui.open_intent(
                "refunds.bulk", {"rows": rows, "reason": bulk_reason, "preview": preview}, fingerprint=fingerprint
            )
    results = st.session_state.get("refunds.bulk_results")
    if results:
        frame = pd.DataFrame(
            [
                {
                    t("refunds.col_line"): r.line,
                    t("refunds.col_identifier"): r.identifier,
                    t("refunds.col_imp_uid"): r.imp_uid or "",
                    t("refunds.col_amount"): ui.money_text(r.amount, r.currency),
                    t("refunds.col_result"): t(f"refunds.result_{r.outcome}"),
                    t("refunds.col_message"): r.message or "",
                    t("refunds.col_remaining"): ui.money_text(r.remaining, r.currency)
                    if r.remaining is not None
                    else "",
                }
                for r in results
            ]
        )
        st.subheader(t("refunds.bulk_results"))
        st.dataframe(frame, hide_index=True, width="stretch", key="refunds.bulk_results_table")
        st.download_button(
            t("refunds.bulk_download"),
            ui.csv_bytes(frame),
            file_name="refund-results.csv",
            mime="text/csv",
            key="refunds.bulk_download",
        )


def bulk_body(intent: ui.Intent) -> None:
    preview: bulk_refunds.BulkPreview = intent.payload["preview"]
    totals = ", ".join(ui.money_text(total, currency) for currency, total in preview.totals.items())
    st.markdown(t("refunds.bulk_confirm_text", ready=len(preview.ready), totals=totals))
    if preview.needs_approval:
        st.warning(t("refunds.bulk_needs_approval"))


def bulk_confirm(intent: ui.Intent) -> None:
    bar = st.progress(0.0, text=t("refunds.bulk_progress", done=0, total=len(intent.payload["preview"].ready)))

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=t("refunds.bulk_progress", done=done, total=total))

    try:
        st.session_state["refunds.bulk_results"] = bulk_refunds.submit_bulk(
            rt,
            actor=actor,
            rows=intent.payload["rows"],
            default_reason=intent.payload["reason"],
            batch_id=intent.key,
            on_progress=progress,
        )
        ui.settle_intent("refunds.bulk")
    except PaymentsError as exc:
        st.session_state["refunds.bulk_results"] = None
        st.session_state["refunds.bulk_error"] = explain(exc)


ui.confirm_dialog(
    "refunds.bulk",
    title=t("refunds.bulk_confirm_title"),
    body=bulk_body,
    on_confirm=bulk_confirm,
    permission=Permission.REFUND,
    confirm_label=t("refunds.confirm_button"),
)

# -- approvals queue -------------------------------------------------------------------------------
with queue:
    show(st.session_state.pop("refunds.queue_result", None))
    waiting = approvals.list_requests(rt, actor=actor)
    if not waiting:
        st.info(t("refunds.queue_empty"))
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "id": r.id,
                        "imp_uid": r.imp_uid,
                        "amount": ui.money_text(r.amount, r.currency) if r.amount is not None else t("refunds.whole"),
                        "reason": r.reason,
                        "by": r.requested_by,
                        "at": kst(r.created_at),
                        "batch": r.batch_id or "",
                        "status": [r.status],
                    }
                    for r in waiting
                ]
            ),
            hide_index=True,
            width="stretch",
            key="refunds.queue_table",
            column_config={
                "id": st.column_config.NumberColumn(t("refunds.col_id"), width="small"),
                "imp_uid": st.column_config.TextColumn(t("refunds.col_imp_uid")),
                "amount": ui.money_column(t("refunds.col_amount")),
                "reason": st.column_config.TextColumn(t("refunds.col_reason")),
                "by": st.column_config.TextColumn(t("refunds.col_requested_by")),
                "at": st.column_config.TextColumn(t("refunds.col_requested_at")),
                "batch": st.column_config.TextColumn(t("refunds.col_batch")),
                "status": ui.status_column(t("refunds.col_decision"), ["awaiting_approval", "executing"]),
            },
        )
        by_id = {r.id: r for r in waiting}
        chosen = st.selectbox(
            t("refunds.queue_pick"),
            list(by_id),
            key="refunds.queue_pick",
            format_func=lambda i: (
                f"#{i} · {by_id[i].imp_uid} · "
                + (
                    ui.money_text(by_id[i].amount, by_id[i].currency)
                    if by_id[i].amount is not None
                    else t("refunds.whole")
                )
                + f" · {by_id[i].requested_by}"
            ),
        )
        note = st.text_input(t("refunds.queue_note"), key="refunds.queue_note")
        request = by_id.get(chosen) if chosen is not None else None
        own = request is not None and request.requested_by == actor.username
        if own:
            st.caption(t("refunds.queue_own"))
        approver_account: dict[str, str] | None = None
        if request is not None and request.needs_refund_account and not own:
            # Never stored in full: the approver enters the customer's account for the cancel itself.
            st.info(t("refunds.queue_vbank"))
            approver_account = account_inputs("refunds.queue", f"request-{request.id}")
        buttons = st.columns(3)
        try:
            if buttons[0].button(t("refunds.approve"), key="refunds.approve", type="primary", disabled=own) and request:
                account = (
                    banks.refund_account(approver_account)
                    if approver_account and all(v.strip() for v in approver_account.values())
                    else None
                )
                outcome = approvals.approve_request(
                    rt, actor=actor, request_id=request.id, note=note, refund_account=account
                )
                st.session_state["refunds.queue_result"] = describe(outcome)
                st.rerun()
            if buttons[1].button(t("refunds.reject"), key="refunds.reject") and request:
                approvals.reject_request(rt, actor=actor, request_id=request.id, note=note)
                st.session_state["refunds.queue_result"] = ("info", t("refunds.rejected_done", id=request.id))
                st.rerun()
            if request is not None and request.batch_id:
                if buttons[2].button(t("refunds.approve_batch"), key="refunds.approve_batch", disabled=own):
                    outcomes = bulk_refunds.approve_batch(rt, actor=actor, batch_id=request.batch_id, note=note)
                    done = sum(1 for r in outcomes if r.outcome == RefundOutcome.REFUNDED)
                    st.session_state["refunds.queue_result"] = (
                        "info",
                        t("refunds.batch_done", done=done, total=len(outcomes)),
                    )
                    st.session_state["refunds.bulk_results"] = outcomes
                    st.rerun()
        except PaymentsError as exc:
            st.session_state["refunds.queue_result"] = ("error", explain(exc))
            st.rerun()
    recent = approvals.list_requests(rt, actor=actor, status=None, limit=20)
    decided = [r for r in recent if r.decided_at is not None]
    if decided:
        with st.expander(t("refunds.queue_recent")):
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "id": r.id,
                            "imp_uid": r.imp_uid,
                            "status": [r.status],
                            "requested_by": r.requested_by,
                            "decided_by": r.decided_by or "",
                            "note": r.decision_note or "",
                            "refund": status_label(r.refund_status) if r.refund_status else "",
                        }
                        for r in decided
                    ]
                ),
                hide_index=True,
                width="stretch",
                key="refunds.queue_recent_table",
                column_config={
                    "status": ui.status_column(
                        t("refunds.col_decision"), ["approved", "rejected", "executing", "awaiting_approval"]
                    ),
                    "requested_by": st.column_config.TextColumn(t("refunds.col_requested_by")),
                    "decided_by": st.column_config.TextColumn(t("refunds.col_decided_by")),
                    "note": st.column_config.TextColumn(t("refunds.col_note")),
                    "refund": st.column_config.TextColumn(t("refunds.col_refund")),
                },
            )
