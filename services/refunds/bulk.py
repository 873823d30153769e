"""Bulk refunds: many payments at once, from the payments page or a CSV.

Rows (imp_uid or merchant_uid, optional amount and reason; for virtual-account payments
refund_bank, refund_holder, refund_account) are previewed against our records (`preview_bulk`),
then sent one by one with a key per row (`submit_bulk`: a rerun replays), each row's outcome
reported in plain codes (services.refunds.outcomes). PortOne is re-checked for every row before
anything is sent (inside `engine.refund`). A batch whose total in a currency is above the approval
threshold is filed for approval as a whole, and approved with `approve_batch`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from sqlalchemy import select

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core.errors import Forbidden, FullRefundOnly, InvalidRequest, NotFound, PaymentsError
from services.core.models import ApprovalStatus, Payment, Refund, RefundRequest
from services.core.money import normalize
from services.portone.banks import RefundAccount
from services.portone.banks import refund_account as parse_refund_account
from services.refunds import engine as refunds
from services.refunds.approvals import approve_request, file_request, needs_approval, operator_lease, refunded_alone
from services.refunds.desk import find_payments, refuse_partial_by_record, requested_amount
from services.refunds.outcomes import DeskResult, RefundOutcome, from_result, outcome_of_error
from services.runtime import Runtime

MAX_BULK_ROWS = 1000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BulkInputRow:
    line: int  # 1-based, as the operator sees it (CSV: the data row number)
    identifier: str  # imp_uid or merchant_uid
    amount: str | None = None  # None or empty: the whole remainder
    reason: str | None = None  # None: the batch's reason
    # A virtual-account payment's refund account, as typed (the number is personal data: not in repr)
    refund_bank: str | None = None
    refund_holder: str | None = None
    refund_account: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BulkPreviewRow:
    line: int
    identifier: str
    reason: str
    check: RefundOutcome | None  # None: ready to send; otherwise why this row will be skipped
    imp_uid: str | None = None
    merchant_uid: str | None = None
    buyer_name: str | None = None
    currency: str | None = None
    remaining: Decimal | None = None
    amount: Decimal | None = None
    message: str | None = None
    refund_account: str | None = None  # bank, masked number, holder
    account: RefundAccount | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class BulkPreview:
    rows: list[BulkPreviewRow]
    totals: dict[str, Decimal]  # ready rows, per currency
    needs_approval: bool

    @property
    def ready(self) -> list[BulkPreviewRow]:
        return [row for row in self.rows if row.check is None]


@dataclass(frozen=True)
class BulkResultRow:
    line: int
    identifier: str
    imp_uid: str | None
    currency: str | None
    amount: Decimal | None
    outcome: RefundOutcome
    message: str | None
    remaining: Decimal | None
    refund_id: int | None
    request_id: int | None


_HEADERS = {
    "imp_uid": "imp_uid",
    "merchant_uid": "merchant_uid",
    "주문번호": "merchant_uid",
    "amount": "amount",
    "금액": "amount",
    "환불금액": "amount",
    "reason": "reason",
    "사유": "reason",
    "환불사유": "reason",
    # a virtual-account payment's refund account (opi/ko/integration/cancel/v1/basic.md)
    "refund_bank": "refund_bank",
    "환불은행": "refund_bank",
    "은행": "refund_bank",
    "refund_holder": "refund_holder",
    "예금주": "refund_holder",
    "refund_account": "refund_account",
    "환불계좌": "refund_account",
    "계좌번호": "refund_account",
}


def parse_bulk_csv(data: bytes) -> list[BulkInputRow]:
    """Rows of a CSV with an imp_uid or merchant_uid column, optional amount and reason columns, and
    for virtual-account payments refund_bank (code or name), refund_holder, refund_account.

    UTF-8 (with or without BOM) or CP949 (Korean Excel's default) are both read.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp949")
        except UnicodeDecodeError:
            raise InvalidRequest("the file is neither UTF-8 nor CP949 text") from None
    try:
        return _bulk_rows(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a cell over the csv module's limit, a quote never closed, NUL
        raise InvalidRequest(f"the file is not a CSV we can read: {exc}") from None


def _bulk_rows(reader: Iterator[list[str]]) -> list[BulkInputRow]:
    header = next(reader, None)
    if not header:
        raise InvalidRequest("the file is empty")
    columns = [_HEADERS.get(name.strip().lower()) for name in header]
    if "imp_uid" not in columns and "merchant_uid" not in columns:
        raise InvalidRequest("the first line must name an imp_uid or merchant_uid column")
    rows: list[BulkInputRow] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        cells = {name: value.strip() for name, value in zip(columns, values, strict=False) if name}
        identifier = cells.get("imp_uid") or cells.get("merchant_uid") or ""
        rows.append(
            BulkInputRow(
                line=len(rows) + 1,
                identifier=identifier,
                amount=cells.get("amount") or None,
                reason=cells.get("reason") or None,
                refund_bank=cells.get("refund_bank") or None,
                refund_holder=cells.get("refund_holder") or None,
                refund_account=cells.get("refund_account") or None,
            )
        )
        if len(rows) > MAX_BULK_ROWS:
            raise InvalidRequest(f"at most {MAX_BULK_ROWS} rows per batch")
    if not rows:
        raise InvalidRequest("the file has no rows")
    return rows


def _preview_row(
    row: BulkInputRow, payment: Payment | None, default_reason: str | None, seen: set[str]
) -> BulkPreviewRow:
    reason = (row.reason or default_reason or "").strip()
    if payment is None:
        return BulkPreviewRow(line=row.line, identifier=row.identifier, reason=reason, check=RefundOutcome.NOT_FOUND)
    currency = payment.currency
    paid = payment.status == "paid"
    remaining = normalize(payment.amount - payment.cancel_amount, currency) if paid else Decimal(0)
    check, message, amount = _row_check(row, payment, remaining, reason, seen)
    account = None
    if check is None and payment.pay_method == refunds.VBANK:
        check, message, account = _row_account(row, payment)
    seen.add(payment.imp_uid)
    return BulkPreviewRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=payment.imp_uid,
        merchant_uid=payment.merchant_uid,
        buyer_name=payment.buyer_name,
        currency=currency,
        remaining=remaining,
        amount=amount,
        reason=reason,
        check=check,
        message=message,
        refund_account=account.described() if account else None,
        account=account,
    )


def _row_account(row: BulkInputRow, payment: Payment) -> tuple[RefundOutcome | None, str | None, RefundAccount | None]:
    """A virtual-account row: its refund account, or why the row is skipped."""
    given = {"bank": row.refund_bank, "holder": row.refund_holder, "number": row.refund_account}
    try:
        account = parse_refund_account(given) if any(given.values()) else None
        refunds.check_refund_account(
            imp_uid=payment.imp_uid,
            pay_method=payment.pay_method,
            pg_provider=payment.pg_provider,
            status=payment.status,
            account=account,
        )
    except PaymentsError as exc:
        return outcome_of_error(exc), str(exc), None
    return None, None, account


def _row_check(
    row: BulkInputRow, payment: Payment, remaining: Decimal, reason: str, seen: set[str]
) -> tuple[RefundOutcome | None, str | None, Decimal | None]:
    """(why the row is skipped or None, a message, the amount to refund)"""
    try:
        given = requested_amount(row.amount, payment.currency)
    except InvalidRequest as exc:
        return RefundOutcome.INVALID, str(exc), None
    amount = remaining if given is None else given
    if payment.imp_uid in seen:
        return RefundOutcome.DUPLICATE, None, amount
    if payment.status != "paid":
        return (RefundOutcome.NOTHING_LEFT if payment.status == "cancelled" else RefundOutcome.NOT_PAID), None, amount
    if remaining <= 0:
        return RefundOutcome.NOTHING_LEFT, None, amount
    if amount > remaining:
        return RefundOutcome.EXCEEDS_REMAINDER, None, amount
    try:
        refuse_partial_by_record(payment, amount, remaining)
    except FullRefundOnly as exc:
        return RefundOutcome.FULL_ONLY, str(exc), amount
    try:
        refunds.checked_reason(reason)
    except InvalidRequest as exc:
        return RefundOutcome.INVALID, str(exc), amount
    return None, None, amount


def preview_bulk(
    rt: Runtime,
    *,
    actor: Actor,
    rows: Sequence[BulkInputRow],
    default_reason: str | None = None,
    batch_id: str | None = None,
) -> BulkPreview:
    """Resolve every row against our records: found?, refundable remainder, amount, and why a row
    would be skipped. Nothing is sent. The batch needs approval when, per currency, its total plus
    what the operator refunded alone in the window (this batch's own rows aside) is above the
    threshold."""
    require(actor, Permission.REFUND)
    if not rows:
        raise InvalidRequest("no rows to refund")
    if len(rows) > MAX_BULK_ROWS:
        raise InvalidRequest(f"at most {MAX_BULK_ROWS} rows per batch")
    with rt.db.read() as session:
        payments = find_payments(session, [row.identifier.strip() for row in rows])
        seen: set[str] = set()
        previewed = [_preview_row(row, payments.get(row.identifier.strip()), default_reason, seen) for row in rows]
    totals: dict[str, Decimal] = {}
    for row in previewed:
        if row.check is None and row.currency and row.amount is not None:
            totals[row.currency] = totals.get(row.currency, Decimal(0)) + row.amount
    alone = refunded_alone(rt, username=actor.username, except_prefix=_bulk_prefix(batch_id) if batch_id else None)
    approval = any(
        needs_approval(rt, currency, total, already=alone.get(currency, Decimal(0)))
        for currency, total in totals.items()
    )
    return BulkPreview(rows=previewed, totals=totals, needs_approval=approval)


def _skipped(row: BulkPreviewRow, check: RefundOutcome) -> BulkResultRow:
    return BulkResultRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=row.imp_uid,
        currency=row.currency,
        amount=row.amount,
        outcome=check,
        message=row.message,
        remaining=row.remaining,
        refund_id=None,
        request_id=None,
    )


def _bulk_prefix(batch_id: str) -> str:
    return f"bulk:{batch_id}:"


def _bulk_key(batch_id: str, row: BulkPreviewRow) -> str:
    return f"{_bulk_prefix(batch_id)}{row.line}:{row.imp_uid}"


def submit_bulk(
    rt: Runtime,
    *,
    actor: Actor,
    rows: Sequence[BulkInputRow],
    default_reason: str | None,
    batch_id: str,
    on_progress: Progress | None = None,
) -> list[BulkResultRow]:
    """Refund every ready row once (a key per row under `batch_id`: a rerun replays), or, when a
    currency's batch total is above its threshold, file the whole batch for approval."""
    require(actor, Permission.REFUND)
    batch_id = refunds.checked_key(batch_id)
    with operator_lease(rt, actor):  # the threshold decided and applied without a rival (renewed as it goes)
        return _submit_bulk(rt, actor, rows, default_reason, batch_id, on_progress)


def _submit_bulk(
    rt: Runtime,
    actor: Actor,
    rows: Sequence[BulkInputRow],
    default_reason: str | None,
    batch_id: str,
    on_progress: Progress | None,
) -> list[BulkResultRow]:
    preview = preview_bulk(rt, actor=actor, rows=rows, default_reason=default_reason, batch_id=batch_id)
    earlier = _earlier_rows(rt, batch_id)  # a rerun: those rows replay whatever the preview says now
    todo = [row for row in preview.rows if row.check is None or _bulk_key(batch_id, row) in earlier]
    if not earlier:
        with rt.db.write() as session:
            audit.record(
                session,
                actor=actor.username,
                action="refund.bulk_submitted",
                target=None,
                batch_id=batch_id,
                rows=len(rows),
                ready=len(todo),
                totals={currency: str(total) for currency, total in preview.totals.items()},
                needs_approval=preview.needs_approval,
            )
    results = {row.line: _skipped(row, row.check) for row in preview.rows if row.check is not None}
    for done, row in enumerate(todo, start=1):
        imp_uid, currency = row.imp_uid or "", row.currency or ""  # always set on these rows
        key = _bulk_key(batch_id, row)
        kind = "request" if preview.needs_approval else "refund"
        if key in earlier:  # replay exactly what was asked then (the remainder has moved since)
            kind, amount, reason = earlier[key]
            row = replace(row, amount=None if amount is None else normalize(amount, currency), reason=reason)
        if kind == "request":
            outcome = file_request(
                rt,
                actor=actor,
                payment_imp_uid=imp_uid,
                currency=currency,
                amount=row.amount,
                reason=row.reason,
                key=key,
                batch_id=batch_id,
            )
            results[row.line] = _bulk_result(row, outcome)
        else:
            results[row.line] = _send_row(rt, actor, row, imp_uid, key)
        if on_progress is not None:
            on_progress(done, len(todo))
    return [results[row.line] for row in preview.rows]


def _earlier_rows(rt: Runtime, batch_id: str) -> dict[str, tuple[str, Decimal | None, str]]:
    """This batch's keys already used: key -> ("request" | "refund", amount, reason) as sent then."""
    prefix = _bulk_prefix(batch_id)
    found: dict[str, tuple[str, Decimal | None, str]] = {}
    with rt.db.read() as session:
        requests = session.execute(
            select(RefundRequest.idempotency_key, RefundRequest.amount, RefundRequest.reason).where(
                RefundRequest.idempotency_key.startswith(prefix, autoescape=True)
            )
        )
        for key, amount, reason in requests:
            found[key] = ("request", amount, reason)
        refunded = session.execute(
            select(Refund.idempotency_key, Refund.amount, Refund.reason).where(
                Refund.idempotency_key.startswith(prefix, autoescape=True)
            )
        )
        for refund_key, refund_amount, refund_reason in refunded:
            if refund_key and refund_key not in found:
                found[refund_key] = ("refund", refund_amount, refund_reason)
    return found


def _bulk_result(row: BulkPreviewRow, outcome: DeskResult) -> BulkResultRow:
    return BulkResultRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=row.imp_uid,
        currency=row.currency,
        amount=row.amount,
        outcome=outcome.outcome,
        message=outcome.message,
        remaining=outcome.remaining,
        refund_id=outcome.refund.refund_id if outcome.refund else None,
        request_id=outcome.request_id,
    )


def _error_row(row: BulkPreviewRow, exc: PaymentsError, request_id: int | None = None) -> BulkResultRow:
    return BulkResultRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=row.imp_uid,
        currency=row.currency,
        amount=row.amount,
        outcome=outcome_of_error(exc),
        message=str(exc),
        remaining=None,
        refund_id=None,
        request_id=request_id,
    )


def _send_row(rt: Runtime, actor: Actor, row: BulkPreviewRow, imp_uid: str, key: str) -> BulkResultRow:
    try:
        result = refunds.refund(
            rt,
            imp_uid=imp_uid,
            amount=row.amount,
            reason=row.reason,
            actor=actor.username,
            idempotency_key=key,
            refund_account=row.account,
        )
    except PaymentsError as exc:
        return _error_row(row, exc)
    return _bulk_result(row, from_result(result))


def approve_batch(
    rt: Runtime, *, actor: Actor, batch_id: str, note: str | None = None, on_progress: Progress | None = None
) -> list[BulkResultRow]:
    """Approve every request of a batch still awaiting approval, each executed once."""
    require(actor, Permission.APPROVE_REFUND)
    with rt.db.read() as session:
        requests = list(
            session.scalars(
                select(RefundRequest)
                .where(RefundRequest.batch_id == batch_id, RefundRequest.status == ApprovalStatus.AWAITING)
                .order_by(RefundRequest.id)
            )
        )
    if not requests:
        raise NotFound(f"no requests of batch {batch_id!r} await approval")
    if any(request.requested_by == actor.username for request in requests):
        raise Forbidden("a refund you requested must be approved by another operator")
    results = []
    for done, request in enumerate(requests, start=1):
        row = BulkPreviewRow(
            line=done,
            identifier=request.imp_uid,
            reason=request.reason,
            check=None,
            imp_uid=request.imp_uid,
            currency=request.currency,
            amount=request.amount,
        )
        try:
            results.append(_bulk_result(row, approve_request(rt, actor=actor, request_id=request.id, note=note)))
        except PaymentsError as exc:
            results.append(_error_row(row, exc, request.id))
        if on_progress is not None:
            on_progress(done, len(requests))
    return results
