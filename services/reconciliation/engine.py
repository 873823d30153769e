"""Reconciliation: does our database agree with PortOne over a time window, and where not?

    start_run(rt, since=..., until=..., actor=..., repair=False, progress=callback) -> RunSummary
    repair(rt, alert_id=..., actor=...) -> RepairResult
    list_runs(rt, limit, actor=...)  (services.reconciliation.runs)

How a run works
- The window is cut into slices: at most 90 days (PortOne's listing limit), and about
  `slice_payments` payments each (sized from PortOne's own totals), in time order.
- A producer thread lists each slice from `GET /payments/status/all` (`from`/`to` filter on each
  payment's current-status time; pages of up to 1000 fetched concurrently, paced to at most
  `max_requests_per_second`), one or two slices ahead of the comparison.
- Per slice, our side is loaded in a few bulk queries: our payments *started* in the slice (with
  their orders, refund attempts and webhook deliveries), plus those the listing named. Ours that
  the listing did not cover are fetched with `GET /payments?imp_uid[]=` (100 per call), unless
  PortOne files them under another slice of the run (judged there). Rejected webhook deliveries
  received in the slice are judged too, whatever payment they name.
- The rules (services.reconciliation.rules) judge each payment; a difference found against a listed
  record is confirmed against a fresh fetch before it is reported (the listing may be seconds old).
- Alerts are written in one transaction per slice (one open alert per kind and payment: a re-run
  refreshes, never duplicates), together with the checkpoint. A run killed half-way resumes
  from its checkpoint (`resume_run_id`), or simply runs again.
- With `repair`, each payment with a repairable difference is re-synced from PortOne (see
  `repair`). Money never moves, except the existing forgery policy of `verify_payment`.
"""

from __future__ import annotations

import gc
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, case, literal, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from services.alerts.store import AlertKind
from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core import job_lock
from services.core.config import Settings
from services.core.errors import Conflict, GatewayRejected, InvalidRequest, NotFound, UnreadableAnswer
from services.core.models import Alert, AlertStatus, Order, Payment, Refund, WebhookEvent, utcnow
from services.payments.sync import apply_payment, lock_payment
from services.payments.verification import verify_payment
from services.portone.types import GatewayPayment, PaymentPage, PortOneStatus
from services.reconciliation.rules import (
    RULE_KINDS,
    Delivery,
    DeliveryResult,
    Facts,
    Finding,
    OurOrder,
    OurPayment,
    OurRefund,
    RuleConfig,
    Verdict,
    attributed_to,
    check_recorded,
    evaluate,
    is_difference,
    load_deliveries,
    quick_agreement,
    status_time,
    write_verdicts,
)
from services.reconciliation.runs import (
    FAILED,
    FINISHED,
    RunSummary,
    Tally,
    create_run,
    get_run,
    list_runs,
    save,
    store,
)
from services.refunds.settlement import alert_overdue_requests, settle_with_lease
from services.runtime import Runtime

__all__ = ["EngineOptions", "Progress", "RepairResult", "list_runs", "repair", "start_run"]

# Defaults of Settings.reconcile_max_requests_per_second and .reconcile_concurrency.
MAX_REQUESTS_PER_SECOND = float(Settings.model_fields["reconcile_max_requests_per_second"].default)
CONCURRENCY = int(Settings.model_fields["reconcile_concurrency"].default)
PAGE_SIZE = 1000  # PortOne's maximum `limit`
SLICE_PAYMENTS = 5_000  # payments per slice: the checkpoint step and the memory bound
MAX_WINDOW_SECONDS = 90 * 86400  # PortOne lists at most 90 days per request
BATCH_SIZE = 100  # imp_uid[] per GET /payments
PREFETCH_SLICES = 2
LISTING_SORT = "started"  # oldest first: payments started during the run land on the last page
SQL_IN_CHUNK = 500

AUTO_REPAIRABLE = frozenset(
    {
        AlertKind.MISSING_IN_DB,
        AlertKind.STATUS_MISMATCH,
        AlertKind.AMOUNT_MISMATCH,
        AlertKind.REFUND_TOTAL_MISMATCH,
        AlertKind.REFUND_OUTCOME_UNKNOWN,
    }
)
REPAIRABLE = AUTO_REPAIRABLE | {AlertKind.REFUND_MISMATCH}
_REFUND_KINDS = frozenset({AlertKind.REFUND_OUTCOME_UNKNOWN, AlertKind.REFUND_MISMATCH})
_FORCEABLE = frozenset({AlertKind.STATUS_MISMATCH, AlertKind.REFUND_TOTAL_MISMATCH})

T = TypeVar("T")


@dataclass(frozen=True)
class EngineOptions:
    max_requests_per_second: float = MAX_REQUESTS_PER_SECOND
    concurrency: int = CONCURRENCY
    page_size: int = PAGE_SIZE
    slice_payments: int = SLICE_PAYMENTS
    rules: RuleConfig | None = None  # None: RuleConfig.from_settings

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            max_requests_per_second=settings.reconcile_max_requests_per_second,
            concurrency=settings.reconcile_concurrency,
        )


@dataclass(frozen=True)
class Progress:
    run_id: int
    fraction: float  # 0..1
    payments_checked: int
    payments_expected: int  # PortOne's count for the window (known after the first calls)
    slices_done: int
    new_alerts: int
    phase: str  # starting | reconciling | finished


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class RepairResult:
    alert_id: int
    kind: str
    imp_uid: str
    resolved: bool  # the alert is resolved now
    actions: tuple[str, ...]  # what the repair did, in order


# -- pacing and time ------------------------------------------------------------------------


class Pacer:
    """At most `per_second` calls per second across threads (evenly spaced; 0 = unpaced)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


_GC_LOCK = threading.Lock()
_GC_RUNS = 0
_GC_SAVED: tuple[int, int, int] | None = None
GC_THRESHOLD = 10_000  # allocations between young-generation collections during a run (default 700)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """A run allocates millions of short-lived objects; with the collector's default threshold
    it sweeps the whole heap dozens of times (measured: ~40% of a 100k-payment run's CPU).
    The threshold is raised process-wide while any run is going, and restored by the last one."""
    global _GC_RUNS, _GC_SAVED
    with _GC_LOCK:
        if _GC_RUNS == 0:
            _GC_SAVED = gc.get_threshold()
            gc.set_threshold(max(GC_THRESHOLD, _GC_SAVED[0]), _GC_SAVED[1], _GC_SAVED[2])
        _GC_RUNS += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_RUNS -= 1
            if _GC_RUNS == 0 and _GC_SAVED is not None:
                gc.set_threshold(*_GC_SAVED)


def _at(second: int) -> datetime:
    return datetime.fromtimestamp(second, tz=UTC)


def _second(moment: datetime) -> int:
    return math.floor(moment.timestamp())


def _split(first: int, last: int, parts: int) -> list[tuple[int, int]]:
    """[first, last] (inclusive seconds) cut into `parts` nearly equal ranges."""
    parts = max(1, min(parts, last - first + 1))
    length = last - first + 1
    bounds = [first + (length * i) // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]


def _windows(first: int, last: int) -> list[tuple[int, int]]:
    """[first, last] cut into ranges PortOne lists in one request (at most 90 days)."""
    return _split(first, last, math.ceil((last - first + 1) / MAX_WINDOW_SECONDS))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- our side, in bulk ----------------------------------------------------------------------


class _Ours:
    """One payment of ours with what the rules need beside it."""

    __slots__ = ("deliveries", "newer", "order", "payment", "refunds")

    def __init__(self, payment: OurPayment, order: OurOrder | None, newer: bool) -> None:
        self.payment = payment
        self.order = order
        self.newer = newer  # synced from PortOne after the answer we compare it with
        self.refunds: list[OurRefund] = []
        self.deliveries: list[Delivery] = []


def _raw(column: Any) -> Any:
    """The driver's own value, without SQLAlchemy's per-row conversion (`_money`/`_moment` below
    do it, several times faster on SQLite: this is the hot loop of a 100k-payment run)."""
    return type_coerce(column, NullType())


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    return Decimal(value) if isinstance(value, int) else Decimal(str(value))


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _load_ours(session: Session, condition: ColumnElement[bool], newer_than: datetime | None) -> dict[str, _Ours]:
    """Our payments matching `condition`, with their orders, refund attempts and webhook deliveries
    (the latest verified one, and every rejected one)."""
    db = session.connection()
    newer = literal(False) if newer_than is None else Payment.synced_at > newer_than
    rows = db.execute(
        select(
            Payment.id,
            Payment.imp_uid,
            Payment.merchant_uid,
            Payment.status,
            _raw(Payment.amount),
            _raw(Payment.cancel_amount),
            Payment.currency,
            case((newer, 1), else_=0),
            Order.merchant_uid,
            _raw(Order.amount),
            Order.currency,
        )
        .outerjoin(Order, Order.id == Payment.order_id)  # by primary key: the cheapest join
        .where(condition)
    ).all()
    found: dict[str, _Ours] = {}
    by_id: dict[int, _Ours] = {}
    unlinked: list[str] = []
    for pid, imp_uid, merchant_uid, status, amount, cancel, currency, is_newer, o_uid, o_amount, o_cur in rows:
        found[imp_uid] = by_id[pid] = _Ours(
            OurPayment(imp_uid, merchant_uid, status, _money(amount), _money(cancel), currency, None),
            None if o_uid is None else OurOrder(o_uid, _money(o_amount), o_cur),
            is_newer == 1,
        )
        if o_uid is None:
            unlinked.append(merchant_uid)
    if not found:
        return found
    if unlinked:  # rows not linked to an order (rare): an order of that merchant_uid may still exist
        orders = _load_orders(session, unlinked)
        for ours in found.values():
            if ours.order is None:
                ours.order = orders.get(ours.payment.merchant_uid)
    refunds = db.execute(
        select(
            Refund.payment_id,
            Refund.id,
            _raw(Refund.amount),
            Refund.status,
            Refund.source,
            Refund.portone_cancellation_id,
            _raw(Refund.created_at),
        )
        .join(Payment, Payment.id == Refund.payment_id)
        .where(condition)
    ).all()
    for payment_id, refund_id, amount, status, source, cancellation_id, created_at in refunds:
        created = _moment(created_at) or utcnow()
        by_id[payment_id].refunds.append(OurRefund(refund_id, _money(amount), status, source, cancellation_id, created))
    latest: dict[str, Any] = {}  # the newest verified delivery per payment is all the rules need
    deliveries = db.execute(
        select(
            WebhookEvent.imp_uid,
            _raw(WebhookEvent.received_at),
            WebhookEvent.result,
            case((WebhookEvent.result == DeliveryResult.REJECTED, WebhookEvent.detail), else_=None),
        )
        .join(Payment, Payment.imp_uid == WebhookEvent.imp_uid)
        .where(condition, WebhookEvent.result.in_([DeliveryResult.PROCESSED, DeliveryResult.REJECTED]))
    ).all()
    for delivered_uid, received_at, result, detail in deliveries:
        if result == DeliveryResult.PROCESSED:
            known = latest.get(delivered_uid)
            if known is None or received_at > known:
                latest[delivered_uid] = received_at
        else:
            moment = _moment(received_at)
            if moment is not None:
                found[delivered_uid].deliveries.append(Delivery(moment, result, detail))
    for delivered_uid, received_at in latest.items():
        moment = _moment(received_at)
        if moment is not None:
            found[delivered_uid].deliveries.append(Delivery(moment, DeliveryResult.PROCESSED))
    return found


def _load_ours_by_uid(session: Session, imp_uids: Sequence[str], newer_than: datetime | None) -> dict[str, _Ours]:
    found: dict[str, _Ours] = {}
    for chunk in _chunks(imp_uids, SQL_IN_CHUNK):
        found.update(_load_ours(session, Payment.imp_uid.in_(chunk), newer_than))
    return found


def _load_orders(session: Session, merchant_uids: Sequence[str]) -> dict[str, OurOrder]:
    found: dict[str, OurOrder] = {}
    for chunk in _chunks(merchant_uids, SQL_IN_CHUNK):
        for uid, amount, currency in session.execute(
            select(Order.merchant_uid, Order.amount, Order.currency).where(Order.merchant_uid.in_(chunk))
        ):
            found[uid] = OurOrder(uid, amount, currency)
    return found


_NONE_OPEN: frozenset[str] = frozenset()


def _open_kinds(session: Session) -> dict[str | None, set[str]]:
    """The kinds of open alerts per payment (for judging: an agreement only matters where one is open)."""
    found: dict[str | None, set[str]] = {}
    rows = session.execute(
        select(Alert.imp_uid, Alert.kind).where(
            Alert.status != AlertStatus.RESOLVED, Alert.kind.in_([str(k) for k in RULE_KINDS])
        )
    )
    for imp_uid, kind in rows:
        found.setdefault(imp_uid, set()).add(kind)
    return found


@dataclass
class _Slice:
    first: int  # unix seconds, inclusive
    last: int
    payments: dict[str, GatewayPayment]
    total: int
    fetched_at: datetime
    unreadable: dict[str | None, str]  # rows PortOne listed that we cannot read: id (if any) -> why


# -- the engine -----------------------------------------------------------------------------


class _Engine:
    def __init__(
        self,
        rt: Runtime,
        *,
        run_id: int,
        window: tuple[int, int],
        options: EngineOptions,
        tally: Tally,
        checkpoint: dict[str, Any],
        actor: str,
        progress: ProgressCallback | None,
    ) -> None:
        self.rt = rt
        self.run_id = run_id
        self.window = window
        self.options = options
        self.rules = options.rules or RuleConfig.from_settings(rt.settings)
        self.tally = tally
        self.checkpoint = checkpoint
        self.actor = actor
        self.repair = bool(checkpoint.get("repair"))
        self.progress = progress
        self.where = f"reconciliation run #{run_id}"
        self.pacer = Pacer(options.max_requests_per_second)
        self.pool = ThreadPoolExecutor(max(1, options.concurrency), thread_name_prefix=f"reconcile-{run_id}")
        self.stop = threading.Event()
        self.expected = 0
        self.listed = 0
        self.slices_done = 0
        self.first_second = int(checkpoint.get("done_until", window[0]))
        self.active_base = float(checkpoint.get("active_seconds", 0.0))
        self.started = time.monotonic()
        self.open_ids: dict[tuple[str, str | None], int] = {}  # the alert of each finding, last slice

    # PortOne, paced

    def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.stop.is_set():
            raise InterruptedError("the run is stopping")
        self.pacer.wait()
        return func(*args, **kwargs)

    def _page(self, first: int, last: int, page: int, limit: int) -> PaymentPage:
        return self._call(
            self.rt.gateway.list_payments,
            status="all",
            since=_at(first),
            until=_at(last),
            page=page,
            limit=limit,
            sorting=LISTING_SORT,
        )

    def _later_page(self, first: int, last: int, page: int, limit: int) -> PaymentPage:
        try:
            return self._page(first, last, page, limit)
        except GatewayRejected:  # the window shrank while we paged: past the last page now
            return PaymentPage(payments=(), total=0, next_page=None)

    def fetch_many(self, imp_uids: Sequence[str]) -> dict[str, GatewayPayment]:
        """PortOne's records of these payments (absent: PortOne has no such payment)."""
        futures = [
            self.pool.submit(self._call, self.rt.gateway.get_payments, list(chunk))
            for chunk in _chunks(imp_uids, BATCH_SIZE)
        ]
        return {payment.imp_uid: payment for future in futures for payment in future.result()}

    # the producer: slices listed ahead of the comparison

    def _slices(self, first: int, last: int) -> Iterator[_Slice]:
        windows = _windows(first, last)
        totals = list(self.pool.map(lambda w: self._page(w[0], w[1], 1, 1).total, windows))
        self.expected = sum(totals)
        for (start, end), total in zip(windows, totals, strict=True):
            for part in _split(start, end, math.ceil(total / self.options.slice_payments) or 1):
                yield from self._listed(*part)

    def _listed(self, first: int, last: int) -> Iterator[_Slice]:
        fetched_at = utcnow()
        size = min(self.options.page_size, PAGE_SIZE)
        head = self._page(first, last, 1, size)
        if head.total > 2 * self.options.slice_payments and last > first:
            for part in _split(first, last, math.ceil(head.total / self.options.slice_payments)):
                yield from self._listed(*part)
            return
        futures = [
            self.pool.submit(self._later_page, first, last, page, size)
            for page in range(2, math.ceil(head.total / size) + 1)
        ]
        payments = {p.imp_uid: p for p in head.payments}
        unreadable = dict(head.unreadable)
        page = head
        for future in futures:
            page = future.result()
            payments.update((p.imp_uid, p) for p in page.payments)
            unreadable.update(page.unreadable)
        # The total may be a lower bound (V2's page.totalCount may count only the page it came with):
        # pages past the planned ones are followed while the last one says more may come.
        while page.next_page is not None and (page.payments or page.unreadable):
            page = self._later_page(first, last, page.next_page, size)
            payments.update((p.imp_uid, p) for p in page.payments)
            unreadable.update(page.unreadable)
        yield _Slice(first, last, payments, head.total, fetched_at, unreadable)

    def _produce(self, first: int, last: int, out: queue.Queue[object]) -> None:
        try:
            for piece in self._slices(first, last):
                self._put(out, piece)
            self._put(out, None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(out, exc)

    def _put(self, out: queue.Queue[object], item: object) -> None:
        while not self.stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    # the consumer

    def run(self, first: int, last: int) -> None:
        self._report("starting")
        if first > last:  # a resumed run that had finished its last slice
            self.pool.shutdown()
            return
        out: queue.Queue[object] = queue.Queue(maxsize=PREFETCH_SLICES)
        producer = threading.Thread(
            target=self._produce, args=(first, last, out), name=f"reconcile-{self.run_id}-list", daemon=True
        )
        producer.start()
        try:
            while True:
                try:
                    item = out.get(timeout=0.5)
                except queue.Empty:
                    if not producer.is_alive():
                        raise RuntimeError("the PortOne listing stopped unexpectedly") from None
                    continue
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, _Slice):
                    self._process(item)
        finally:
            self.stop.set()
            producer.join(timeout=30)
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _facts(
        self,
        imp_uid: str,
        portone: GatewayPayment | None,
        ours: _Ours | None,
        fresh: bool,
        orders: dict[str, OurOrder],
        deliveries: dict[str, list[Delivery]],
    ) -> Facts:
        if ours is None:
            return Facts(
                imp_uid=imp_uid,
                order=None if portone is None else orders.get(portone.merchant_uid),
                portone=portone,
                portone_checked=True,
                deliveries=deliveries.get(imp_uid, ()),
            )
        return Facts(
            imp_uid=imp_uid,
            ours=ours.payment,
            order=ours.order,
            portone=portone,
            portone_checked=True,
            comparable=fresh or not ours.newer,
            refunds=ours.refunds,
            deliveries=ours.deliveries,
        )

    def _judge(
        self,
        payments: dict[str, GatewayPayment | None],
        fresh: bool,
        ours: dict[str, _Ours],
        session: Session,
        open_kinds: dict[str | None, set[str]],
    ) -> list[tuple[Facts, list[Verdict]]]:
        """Judge these payments; `fresh`: PortOne's answers were fetched after our rows were read."""
        lone = {uid: p for uid, p in payments.items() if uid not in ours and p is not None}  # not in our DB
        orders = _load_orders(session, sorted({p.merchant_uid for p in lone.values()}))
        deliveries = load_deliveries(session, sorted(lone))
        now = utcnow()
        judged: list[tuple[Facts, list[Verdict]]] = []
        rules = self.rules
        for imp_uid, portone in payments.items():
            try:
                facts = self._facts(imp_uid, portone, ours.get(imp_uid), fresh, orders, deliveries)
                opened = open_kinds.get(imp_uid)
                if opened is None and quick_agreement(facts, rules):
                    judged.append((facts, []))
                else:
                    judged.append((facts, evaluate(facts, rules, now, opened or _NONE_OPEN)))
            except Exception as exc:  # noqa: BLE001 - one payment must never stop the run
                self._judging_failed(imp_uid, exc)
        return judged

    def _judging_failed(self, imp_uid: str, exc: Exception, *, action: str = "reconcile.payment_failed") -> None:
        """Recorded in the audit log (`action`); the run goes on."""
        with self.rt.db.write() as session:
            audit.record(
                session,
                actor=self.actor,
                action=action,
                target=imp_uid,
                error=f"{type(exc).__name__}: {exc}"[:500],
                run_id=self.run_id,
            )

    def _process(self, piece: _Slice) -> None:
        start, end = _at(piece.first), _at(piece.last + 1)
        with self.rt.db.read() as session:
            ours = _load_ours(session, and_(Payment.started_at >= start, Payment.started_at < end), piece.fetched_at)
            listed = [uid for uid in piece.payments if uid not in ours]
            ours.update(_load_ours_by_uid(session, listed, piece.fetched_at))
        # A row PortOne listed but we cannot read is not judged this run (nor asked for again: the
        # answer would be as unreadable); it is in the audit log, and the rest of the run goes on.
        for uid, why in piece.unreadable.items():
            self._judging_failed(uid or "(no id)", UnreadableAnswer(why), action="reconcile.payment_unreadable")
        # Ours the listing did not cover: ask PortOne for them directly.
        uncovered = [uid for uid in ours if uid not in piece.payments and uid not in piece.unreadable]
        fresh = self.fetch_many(uncovered) if uncovered else {}
        elsewhere = {uid for uid, p in fresh.items() if self._listed_elsewhere(p, piece)}
        direct: dict[str, GatewayPayment | None] = {uid: fresh.get(uid) for uid in uncovered if uid not in elsewhere}
        with self.rt.db.read() as session:
            open_kinds = _open_kinds(session)
            judged = self._judge(dict(piece.payments), False, ours, session, open_kinds)
            judged += self._judge(direct, True, ours, session, open_kinds)
        judged = self._confirm(judged, set(direct), open_kinds)
        verdicts = [v for _, vs in judged for v in vs]
        verdicts += self._rejected_deliveries(start, end, {f.imp_uid for f, _ in judged})
        self.tally.payments_checked += len(judged)
        self.listed += len(piece.payments)
        repairs = self._repairs(judged) if self.repair else {}
        self.checkpoint["done_until"] = piece.last + 1
        self._write(verdicts, checkpoint=not repairs)
        if repairs:
            self._repair_all(repairs)
            save(self.rt, self.run_id, self.tally, self._checkpoint())
        self.slices_done += 1
        self._report("reconciling")

    def _listed_elsewhere(self, portone: GatewayPayment, piece: _Slice) -> bool:
        """Whether another slice of this run lists (or listed) this payment, and judges it there."""
        moment = status_time(portone)
        if moment is None:
            return False
        second = _second(moment)
        inside_run = self.window[0] <= second <= self.window[1]
        return inside_run and not piece.first <= second <= piece.last

    def _confirm(
        self, judged: list[tuple[Facts, list[Verdict]]], direct: set[str], open_kinds: dict[str | None, set[str]]
    ) -> list[tuple[Facts, list[Verdict]]]:
        """A difference against a listed record is judged again on a fresh fetch: the listing may
        be older than a /complete, webhook or refund that has since updated our row."""
        suspects = [f.imp_uid for f, vs in judged if f.imp_uid and f.imp_uid not in direct and is_difference(f, vs)]
        if not suspects:
            return judged
        fetched_at = utcnow()
        fresh = self.fetch_many(suspects)
        with self.rt.db.read() as session:
            ours = _load_ours_by_uid(session, suspects, fetched_at)
            again = {f.imp_uid: (f, vs) for f, vs in self._judge(dict(fresh), False, ours, session, open_kinds)}
        missing = [uid for uid in suspects if uid not in fresh and uid in ours]
        now = utcnow()
        for uid in missing:
            facts = self._facts(uid, None, ours[uid], False, {}, {})
            again[uid] = (facts, evaluate(facts, self.rules, now, open_kinds.get(uid, _NONE_OPEN)))
        return [again.get(f.imp_uid, (f, vs)) if f.imp_uid else (f, vs) for f, vs in judged]

    def _rejected_deliveries(self, start: datetime, end: datetime, judged: set[str | None]) -> list[Verdict]:
        """Rejected webhook deliveries received in the slice, for payments not judged above."""
        scope = frozenset({AlertKind.WEBHOOK_UNVERIFIED})
        with self.rt.db.read() as session:
            rejected = session.scalars(
                select(WebhookEvent.imp_uid)
                .where(
                    WebhookEvent.result == DeliveryResult.REJECTED,
                    WebhookEvent.received_at >= start,
                    WebhookEvent.received_at < end,
                )
                .distinct()
            ).all()
            named = sorted(uid for uid in rejected if uid is not None and uid not in judged)
            deliveries = load_deliveries(session, named)
            deliveries_none: list[Delivery] = []
            if None in rejected:
                deliveries_none = [
                    Delivery(at, DeliveryResult.REJECTED, detail)
                    for at, detail in session.execute(
                        select(WebhookEvent.received_at, WebhookEvent.detail).where(
                            WebhookEvent.imp_uid.is_(None),
                            WebhookEvent.result == DeliveryResult.REJECTED,
                            WebhookEvent.received_at >= start,
                            WebhookEvent.received_at < end,
                        )
                    )
                ]
        now = utcnow()
        verdicts: list[Verdict] = []
        for uid in named:
            facts = Facts(imp_uid=uid, deliveries=tuple(deliveries.get(uid, ())), scope=scope)
            verdicts += evaluate(facts, self.rules, now)
        if None in rejected:
            verdicts += evaluate(Facts(imp_uid=None, deliveries=tuple(deliveries_none), scope=scope), self.rules, now)
        return verdicts

    def _write(self, verdicts: list[Verdict], *, checkpoint: bool) -> None:
        for attempt in range(3):
            try:
                with self.rt.db.write() as session:
                    result = write_verdicts(
                        session, verdicts, actor="system", where=self.where, run_id=self.run_id, load_all_open=True
                    )
                    tally = self.tally.plus(result)
                    if checkpoint:
                        store(session, self.run_id, tally, self._checkpoint())
            except IntegrityError:  # a real-time check opened the same alert meanwhile (PostgreSQL)
                if attempt == 2:
                    raise
                continue
            self.tally = tally
            self.open_ids = result.open_ids
            return

    def _checkpoint(self) -> dict[str, Any]:
        return {**self.checkpoint, "active_seconds": self.active_base + (time.monotonic() - self.started)}

    # automatic repairs

    def _repairs(self, judged: list[tuple[Facts, list[Verdict]]]) -> dict[str, set[AlertKind]]:
        wanted: dict[str, set[AlertKind]] = {}
        for facts, verdicts in judged:
            for verdict in verdicts:
                outcome = verdict.outcome
                if isinstance(outcome, Finding) and facts.imp_uid and _auto_repairable(facts, outcome.kind):
                    wanted.setdefault(facts.imp_uid, set()).add(outcome.kind)
        return wanted

    def _repair_all(self, repairs: dict[str, set[AlertKind]]) -> None:
        where = f"automatic repair in reconciliation run #{self.run_id}"
        for imp_uid, kinds in repairs.items():
            ids = {kind: self.open_ids.get((str(kind), imp_uid)) for kind in kinds}
            try:
                _repair_payment(self.rt, imp_uid=imp_uid, kinds=kinds, actor=self.actor, where=where)
            except Exception as exc:  # noqa: BLE001 - one payment's failed repair must not stop the run
                with self.rt.db.write() as session:
                    audit.record(
                        session,
                        actor=self.actor,
                        action="reconcile.repair_failed",
                        target=imp_uid,
                        error=f"{type(exc).__name__}: {exc}",
                        run_id=self.run_id,
                    )
                continue
            with self.rt.db.read() as session:
                for kind, alert_id in ids.items():
                    status = session.scalar(select(Alert.status).where(Alert.id == alert_id)) if alert_id else None
                    if status == AlertStatus.RESOLVED:
                        self.tally.repaired[str(kind)] += 1

    def _report(self, phase: str) -> None:
        if self.progress is None:
            return
        if self.expected:
            fraction = min(self.listed / self.expected, 1.0)
        else:
            span = max(self.window[1] - self.first_second + 1, 1)
            fraction = min((self.checkpoint.get("done_until", self.first_second) - self.first_second) / span, 1.0)
        self.progress(
            Progress(
                run_id=self.run_id,
                fraction=1.0 if phase == "finished" else fraction,
                payments_checked=self.tally.payments_checked,
                payments_expected=self.expected,
                slices_done=self.slices_done,
                new_alerts=sum(self.tally.new.values()),
                phase=phase,
            )
        )


def _auto_repairable(facts: Facts, kind: AlertKind) -> bool:
    if kind not in AUTO_REPAIRABLE:
        return False
    if kind == AlertKind.AMOUNT_MISMATCH:
        # A forgery still paid is cancelled by verify_payment (the forgery policy); one already
        # cancelled has nothing left to repair. Our own record's amount is re-synced.
        g, p = facts.portone, facts.ours
        ours_differ = p is not None and g is not None and (p.amount, p.currency) != (g.amount, g.currency)
        return g is not None and (g.status == PortOneStatus.PAID or ours_differ)
    return True


# -- runs -----------------------------------------------------------------------------------


def start_run(
    rt: Runtime,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: Actor,
    repair: bool = False,
    progress: ProgressCallback | None = None,
    resume_run_id: int | None = None,
    options: EngineOptions | None = None,
) -> RunSummary:
    """Reconcile [since, until] (default until: now) against PortOne, or resume an interrupted run.

    Blocks until the run ends (the dashboard runs it in a thread and shows `progress`). One run at a
    time across processes (scheduled, dashboard, command line): the `reconcile` job lock. Raises
    JobBusy (a Conflict: another run is in progress), InvalidRequest (bad window), Conflict (resuming
    a finished run), GatewayError (PortOne could not be asked; the run is stored as failed and can
    be resumed).
    """
    require(actor, Permission.RUN_RECONCILIATION)
    if repair:
        require(actor, Permission.HANDLE_ALERTS)
    with job_lock.held(rt, job_lock.RECONCILE):
        return _run_locked(
            rt,
            since=since,
            until=until,
            actor=actor,
            repair=repair,
            progress=progress,
            resume_run_id=resume_run_id,
            options=options,
        )


def _run_locked(
    rt: Runtime,
    *,
    since: datetime | None,
    until: datetime | None,
    actor: Actor,
    repair: bool,
    progress: ProgressCallback | None,
    resume_run_id: int | None,
    options: EngineOptions | None,
) -> RunSummary:
    options = options or EngineOptions.from_settings(rt.settings)
    if resume_run_id is not None:
        run = get_run(rt, resume_run_id)
        if run.status == FINISHED:
            raise Conflict(f"reconciliation run #{resume_run_id} already finished")
        checkpoint = dict(run.checkpoint or {})
        checkpoint["repair"] = bool(checkpoint.get("repair")) or repair
        checkpoint["resumed"] = int(checkpoint.get("resumed", 0)) + 1
        window = (_second(run.window_start), _second(run.window_end))
        tally = Tally.restore(run.counts, run.payments_checked)
        run_id = run.id
    else:
        until = until or utcnow()
        if since is None or since.tzinfo is None or until.tzinfo is None:
            raise InvalidRequest("a reconciliation window needs timezone-aware since and until times")
        if since >= until:
            raise InvalidRequest("the window's start must be before its end")
        window = (_second(since), _second(until))
        run_id = create_run(rt, since=_at(window[0]), until=_at(window[1]), started_by=actor.username, repair=repair)
        checkpoint = {"repair": repair, "active_seconds": 0.0}
        tally = Tally()
    engine = _Engine(
        rt,
        run_id=run_id,
        window=window,
        options=options,
        tally=tally,
        checkpoint=checkpoint,
        actor=actor.username,
        progress=progress,
    )
    try:
        with _fewer_collections():
            engine.run(engine.first_second, window[1])
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        save(rt, run_id, engine.tally, engine._checkpoint(), status=FAILED, error=reason[:2000])
        raise
    engine.checkpoint["done_until"] = window[1] + 1
    summary = save(rt, run_id, engine.tally, engine._checkpoint(), status=FINISHED)
    engine._report("finished")
    # Refunds PortOne accepted as REQUESTED and left unfinished too long: every scheduled run looks.
    alert_overdue_requests(rt, actor=actor.username)
    return summary


# -- repairs --------------------------------------------------------------------------------


def repair(rt: Runtime, *, alert_id: int, actor: Actor) -> RepairResult:
    """Re-sync the alert's payment from PortOne, where PortOne is the source of truth.

    Status, cancel amount and amount are copied from PortOne (even over a record of ours that is
    ahead of PortOne's); a payment we never recorded is recorded; refund attempts of unknown
    outcome are settled from PortOne's cancel history (never resent); a forged payment still paid
    is cancelled by the existing forgery policy. Nothing else moves money. The alert resolves
    itself when the difference is gone. Raises NotFound, Conflict (already resolved),
    InvalidRequest (a kind that PortOne's record cannot repair), GatewayError.
    """
    require(actor, Permission.HANDLE_ALERTS)
    with rt.db.read() as session:
        alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert #{alert_id}")
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"alert #{alert_id} is already resolved")
    if alert.kind not in REPAIRABLE or not alert.imp_uid:
        raise InvalidRequest(f"a {alert.kind} alert cannot be repaired from PortOne's record: handle it by hand")
    kind = AlertKind(alert.kind)
    actions = _repair_payment(
        rt, imp_uid=alert.imp_uid, kinds={kind}, actor=actor.username, where=f"repair by {actor.username}"
    )
    with rt.db.read() as session:
        status = session.scalar(select(Alert.status).where(Alert.id == alert_id))
    return RepairResult(
        alert_id=alert_id,
        kind=str(kind),
        imp_uid=alert.imp_uid,
        resolved=status == AlertStatus.RESOLVED,
        actions=tuple(actions),
    )


def _repair_payment(rt: Runtime, *, imp_uid: str, kinds: set[AlertKind], actor: str, where: str) -> list[str]:
    actions: list[str] = []
    with attributed_to(actor, where):
        if kinds & _REFUND_KINDS:
            settled = settle_with_lease(rt, imp_uid=imp_uid, actor=actor)
            actions.append(f"settled {settled} refund attempt(s) from PortOne's cancel history")
        try:
            verified = verify_payment(rt, imp_uid=imp_uid, source="reconcile")
        except NotFound:
            actions.append("PortOne has no such payment: nothing to sync")
        else:
            actions.append(f"synced from PortOne: {verified.status}, cancelled {verified.cancel_amount}")
            if verified.forgery:
                actions.append("amount differs from the order: the forgery policy cancels what is still paid")
            if kinds & _FORCEABLE:
                forced = _force_sync(rt, imp_uid=imp_uid, actor=actor)
                if forced:
                    actions.append(forced)
    with rt.db.write() as session:
        audit.record(
            session,
            actor=actor,
            action="reconcile.repaired",
            target=imp_uid,
            kinds=sorted(str(k) for k in kinds),
            actions=actions,
            where=where,
        )
    return actions


def _force_sync(rt: Runtime, *, imp_uid: str, actor: str) -> str | None:
    """Our status or cancel total is ahead of PortOne's (apply_payment never rolls a record back,
    to survive racing fetches): on a repair, PortOne's record wins."""
    fetched = rt.gateway.get_payment(imp_uid)
    with rt.db.write() as session:
        # Same lock order as apply_payment: the order, then the payment.
        session.scalar(select(Order).where(Order.merchant_uid == fetched.merchant_uid).with_for_update())
        payment = lock_payment(session, imp_uid)
        if payment is None:
            return None
        before = (payment.status, payment.cancel_amount)
        if before == (fetched.status, fetched.cancel_amount):
            return None
        payment.status = str(fetched.status)
        payment.cancel_amount = fetched.cancel_amount
        applied = apply_payment(session, fetched, source="reconcile")
        check_recorded(session, fetched, applied, source="reconcile", settings=rt.settings)
        audit.record(
            session,
            actor=actor,
            action="payment.force_synced",
            target=imp_uid,
            before={"status": before[0], "cancel_amount": before[1]},
            after={"status": str(fetched.status), "cancel_amount": fetched.cancel_amount},
        )
    return f"our record ({before[0]}, cancelled {before[1]}) was ahead of PortOne's: replaced by PortOne's"
