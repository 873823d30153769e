"""Reconciliation: does our database agree with PortOne over a time window, and where not?

    start_run(rt, since=..., until=..., actor=..., repair=False, progress=callback) -> RunSummary
    repair(rt, alert_id=..., actor=...) -> RepairResult  (services.reconciliation.repair)
    list_runs(rt, limit, actor=...)  (services.reconciliation.runs)

How a run works
- The window is cut into slices: at most 90 days (PortOne's listing limit), and about
  `slice_payments` payments each (sized from PortOne's own totals), in time order.
- A producer thread lists each slice from `GET /payments/status/all` (`from`/`to` filter on each
  payment's current-status time; pages of up to 1000 fetched concurrently, paced to at most
  `max_requests_per_second`), one or two slices ahead of the comparison (services.reconciliation.listing).
- Per slice, our side is loaded in a few bulk queries (services.reconciliation.our_side): our payments *started* in the slice (with
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
  services.reconciliation.repair). Money never moves, except the existing forgery policy of `verify_payment`.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.alerts.store import AlertKind
from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core import job_lock
from services.core.config import Settings
from services.core.errors import InvalidRequest, UnreadableAnswer
from services.core.models import Alert, AlertStatus, Payment, WebhookEvent, utcnow
from services.portone.types import GatewayPayment
from services.reconciliation.alert_writer import write_verdicts
from services.reconciliation.facts import DeliveryResult, Facts, Finding, OurDelivery, OurOrder, Verdict
from services.reconciliation.listing import PAGE_SIZE, PortOneLister, Slice, at_second, second_of
from services.reconciliation.our_side import (
    NONE_OPEN,
    OurRecord,
    load_deliveries,
    load_open_kinds,
    load_orders,
    load_ours,
    load_ours_by_uid,
    webhook_log_purged_before,
)
from services.reconciliation.repair import auto_repairable, repair_payment
from services.reconciliation.rules import RuleConfig, evaluate, is_difference, quick_agreement, status_time
from services.reconciliation.runs import FAILED, FINISHED, RunSummary, Tally, claim_for_resume, create_run, save, store
from services.refunds.settlement import alert_overdue_requests
from services.runtime import Runtime

__all__ = ["EngineOptions", "RunProgress", "start_run"]

# Defaults of Settings.reconcile_max_requests_per_second and .reconcile_concurrency.
MAX_REQUESTS_PER_SECOND = float(Settings.model_fields["reconcile_max_requests_per_second"].default)
CONCURRENCY = int(Settings.model_fields["reconcile_concurrency"].default)
SLICE_PAYMENTS = 5_000  # payments per slice: the checkpoint step and the memory bound
PREFETCH_SLICES = 2


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
class RunProgress:
    run_id: int
    fraction: float  # 0..1
    payments_checked: int
    payments_expected: int  # PortOne's count for the window (known after the first calls)
    slices_done: int
    new_alerts: int
    phase: str  # starting | reconciling | finished


ProgressCallback = Callable[[RunProgress], None]


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
        self.portone = PortOneLister(
            rt,
            run_id=run_id,
            max_requests_per_second=options.max_requests_per_second,
            concurrency=options.concurrency,
            page_size=options.page_size,
            slice_payments=options.slice_payments,
        )
        self.listed = 0
        self.slices_done = 0
        self.first_second = int(checkpoint.get("done_until", window[0]))
        self.active_base = float(checkpoint.get("active_seconds", 0.0))
        self.started = time.monotonic()
        self.open_ids: dict[tuple[str, str | None], int] = {}  # the alert of each finding, last slice

    def run(self, first: int, last: int) -> None:
        self._report("starting")
        if first > last:  # a resumed run that had finished its last slice
            self.portone.pool.shutdown()
            return
        out: queue.Queue[object] = queue.Queue(maxsize=PREFETCH_SLICES)
        producer = threading.Thread(
            target=self.portone.produce, args=(first, last, out), name=f"reconcile-{self.run_id}-list", daemon=True
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
                if isinstance(item, Slice):
                    self._process(item)
        finally:
            self.portone.stop.set()
            producer.join(timeout=30)
            self.portone.pool.shutdown(wait=True, cancel_futures=True)

    def _facts(
        self,
        imp_uid: str,
        portone: GatewayPayment | None,
        ours: OurRecord | None,
        fresh: bool,
        orders: dict[str, OurOrder],
        deliveries: dict[str, list[OurDelivery]],
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
        ours: dict[str, OurRecord],
        session: Session,
        open_kinds: dict[str | None, set[str]],
    ) -> list[tuple[Facts, list[Verdict]]]:
        """Judge these payments; `fresh`: PortOne's answers were fetched after our rows were read."""
        lone = {uid: p for uid, p in payments.items() if uid not in ours and p is not None}  # not in our DB
        orders = load_orders(session, sorted({p.merchant_uid for p in lone.values()}))
        deliveries = load_deliveries(session, sorted(lone))
        now = utcnow()
        judged: list[tuple[Facts, list[Verdict]]] = []
        # After every delivery of this slice is read (the purge records its horizon before deleting).
        rules = replace(self.rules, webhook_log_purged_before=webhook_log_purged_before(session))
        for imp_uid, portone in payments.items():
            try:
                facts = self._facts(imp_uid, portone, ours.get(imp_uid), fresh, orders, deliveries)
                opened = open_kinds.get(imp_uid)
                if opened is None and quick_agreement(facts, rules):
                    judged.append((facts, []))
                else:
                    judged.append((facts, evaluate(facts, rules, now, opened or NONE_OPEN)))
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

    def _process(self, piece: Slice) -> None:
        start, end = at_second(piece.first), at_second(piece.last + 1)
        with self.rt.db.read() as session:
            ours = load_ours(session, and_(Payment.started_at >= start, Payment.started_at < end), piece.fetched_at)
            listed = [uid for uid in piece.payments if uid not in ours]
            ours.update(load_ours_by_uid(session, listed, piece.fetched_at))
        # A row PortOne listed but we cannot read is not judged this run (nor asked for again: the
        # answer would be as unreadable); it is in the audit log, and the rest of the run goes on.
        for uid, why in piece.unreadable.items():
            self._judging_failed(uid or "(no id)", UnreadableAnswer(why), action="reconcile.payment_unreadable")
        # Ours the listing did not cover: ask PortOne for them directly.
        uncovered = [uid for uid in ours if uid not in piece.payments and uid not in piece.unreadable]
        fresh = self.portone.fetch_many(uncovered) if uncovered else {}
        elsewhere = {uid for uid, p in fresh.items() if self._listed_elsewhere(p, piece)}
        direct: dict[str, GatewayPayment | None] = {uid: fresh.get(uid) for uid in uncovered if uid not in elsewhere}
        with self.rt.db.read() as session:
            open_kinds = load_open_kinds(session)
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

    def _listed_elsewhere(self, portone: GatewayPayment, piece: Slice) -> bool:
        """Whether another slice of this run lists (or listed) this payment, and judges it there."""
        moment = status_time(portone)
        if moment is None:
            return False
        second = second_of(moment)
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
        fresh = self.portone.fetch_many(suspects)
        with self.rt.db.read() as session:
            ours = load_ours_by_uid(session, suspects, fetched_at)
            again = {f.imp_uid: (f, vs) for f, vs in self._judge(dict(fresh), False, ours, session, open_kinds)}
        missing = [uid for uid in suspects if uid not in fresh and uid in ours]
        now = utcnow()
        for uid in missing:
            facts = self._facts(uid, None, ours[uid], False, {}, {})
            again[uid] = (facts, evaluate(facts, self.rules, now, open_kinds.get(uid, NONE_OPEN)))
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
            deliveries_none: list[OurDelivery] = []
            if None in rejected:
                deliveries_none = [
                    OurDelivery(at, DeliveryResult.REJECTED, detail)
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
                if isinstance(outcome, Finding) and facts.imp_uid and auto_repairable(facts, outcome.kind):
                    wanted.setdefault(facts.imp_uid, set()).add(outcome.kind)
        return wanted

    def _repair_all(self, repairs: dict[str, set[AlertKind]]) -> None:
        where = f"automatic repair in reconciliation run #{self.run_id}"
        for imp_uid, kinds in repairs.items():
            ids = {kind: self.open_ids.get((str(kind), imp_uid)) for kind in kinds}
            try:
                repair_payment(self.rt, imp_uid=imp_uid, kinds=kinds, actor=self.actor, where=where)
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
        if self.portone.expected:
            fraction = min(self.listed / self.portone.expected, 1.0)
        else:
            span = max(self.window[1] - self.first_second + 1, 1)
            fraction = min((self.checkpoint.get("done_until", self.first_second) - self.first_second) / span, 1.0)
        self.progress(
            RunProgress(
                run_id=self.run_id,
                fraction=1.0 if phase == "finished" else fraction,
                payments_checked=self.tally.payments_checked,
                payments_expected=self.portone.expected,
                slices_done=self.slices_done,
                new_alerts=sum(self.tally.new.values()),
                phase=phase,
            )
        )


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
        run = claim_for_resume(rt, resume_run_id)
        checkpoint = dict(run.checkpoint or {})
        checkpoint["repair"] = bool(checkpoint.get("repair")) or repair
        checkpoint["resumed"] = int(checkpoint.get("resumed", 0)) + 1
        window = (second_of(run.window_start), second_of(run.window_end))
        tally = Tally.restore(run.counts, run.payments_checked)
        run_id = run.id
    else:
        until = until or utcnow()
        if since is None or since.tzinfo is None or until.tzinfo is None:
            raise InvalidRequest("a reconciliation window needs timezone-aware since and until times")
        if since >= until:
            raise InvalidRequest("the window's start must be before its end")
        window = (second_of(since), second_of(until))
        run_id = create_run(
            rt, since=at_second(window[0]), until=at_second(window[1]), started_by=actor.username, repair=repair
        )
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
