"""In-memory payment store with sorted indexes.

Indexes are plain sorted lists of ``int`` keys ``(timestamp << 32) | seq``,
searched with ``bisect``: one list per status plus one for ``all``. The
timestamp is the one ``GET /payments/status`` filters on for the payment's
current status (ready: started_at, paid: paid_at, cancelled: cancelled_at,
failed: failed_at), so a from/to window is two bisections, never a scan.

All mutations happen under ``lock`` (an RLock); callers that render a
payment hold it too, so a response is a consistent snapshot.
"""

from __future__ import annotations

import random
import secrets
import threading
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter
from typing import Any

from sandbox import partial_cancel
from sandbox.money import has_valid_precision
from sandbox.payments import STATUSES, CancelEntry, Payment

_SHIFT = 32
_MASK = (1 << _SHIFT) - 1

SORTINGS: dict[str, tuple[str, bool]] = {
    "-started": ("started_at", True),
    "started": ("started_at", False),
    "-paid": ("paid_at", True),
    "paid": ("paid_at", False),
    "-updated": ("updated_at", True),
    "updated": ("updated_at", False),
}
# Where the status index order already is the requested sort order.
_NATURAL_FIELD = {"ready": "started_at", "paid": "paid_at"}

# Refusal messages of POST /payments/cancel. PortOne's exact wording is not in
# the docs; these follow the Korean style of its API messages.
MSG_NOT_FOUND = "취소할 결제건이 존재하지 않습니다."
MSG_ALREADY_CANCELLED = "이미 전액취소된 주문입니다."
# Virtual-account refunds: PortOne needs the customer's account (opi/ko/integration/cancel/v1/basic.md,
# "[가상계좌 환불시 필수입력]"), and some PGs cannot refund a virtual account at all
# (help/core-service/how-to-use/impossible-partial-cancel.md: 다날).
MSG_REFUND_ACCOUNT_REQUIRED = (
    "가상계좌 환불시 환불 수령계좌 정보(refund_holder: 예금주, refund_bank: 은행코드, "
    "refund_account: 계좌번호)는 필수입력입니다."
)
MSG_VBANK_REFUND_UNSUPPORTED = "해당 PG사({pg})는 가상계좌 환불을 지원하지 않습니다."
VBANK_REFUND_UNSUPPORTED_PGS = frozenset({"danal", "danal_tpay"})


def vbank_refund_refusal(pay_method: str | None, pg_provider: str | None, req: CancelRequest) -> str | None:
    """Why PortOne refuses this cancel of a paid virtual-account payment, or None."""
    if pay_method != "vbank":
        return None
    if (pg_provider or "") in VBANK_REFUND_UNSUPPORTED_PGS:
        return MSG_VBANK_REFUND_UNSUPPORTED.format(pg=pg_provider)
    account = req.refund_account or {}
    if not all((account.get(name) or "").strip() for name in ("holder", "bank", "number")):
        return MSG_REFUND_ACCOUNT_REQUIRED
    return None


# The envelope's `code` of a refusal: non-zero, with the reason in `message`
# (schema/v1.openapi.json ResponseAnnotation). PortOne answers these two with 1, the rest with -1.
CODE_NOTHING_TO_CANCEL = 1


def _key(ts: int, seq: int) -> int:
    return (ts << _SHIFT) | seq


@dataclass(slots=True)
class Prepared:
    merchant_uid: str
    amount: Decimal
    currency: str | None


@dataclass(slots=True)
class CancelRequest:
    imp_uid: str | None
    merchant_uid: str | None
    amount: Decimal | None  # None or 0 = the whole remainder
    checksum: Decimal | None  # None = no check
    reason: str
    # Where a virtual-account deposit is paid back (refund_holder, refund_bank, refund_account);
    # required for a paid vbank payment (opi/ko/integration/cancel/v1/basic.md).
    refund_account: dict[str, str] | None = None


@dataclass(slots=True)
class CancelResult:
    applied: bool
    message: str | None = None
    code: int = -1  # the V1 envelope code of a refusal
    payment: dict[str, Any] | None = None  # rendered, taken under the lock
    imp_uid: str | None = None
    merchant_uid: str | None = None
    cancellation_id: str | None = None
    amount: Decimal | None = None
    notice_url: str | None = None
    refund_account: dict[str, str] | None = None


@dataclass
class _Cache:
    entries: OrderedDict[tuple[Any, ...], list[int]] = field(default_factory=OrderedDict)
    max_entries: int = 4


class PaymentStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._rng = random.Random(secrets.randbits(64))
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self._payments: list[Payment] = []
            self._by_imp: dict[str, int] = {}
            self._by_merchant: dict[str, int | list[int]] = {}
            self._index: dict[str, list[int]] = {s: [] for s in (*STATUSES, "all")}
            self._prepared: dict[str, Prepared] = {}
            self._version = 0
            self._cache = _Cache()

    # ---- ids -------------------------------------------------------------
    def new_imp_uid(self) -> str:
        """``imp_`` + 12 digits, unique in this store (caller holds the lock)."""
        while True:
            uid = f"imp_{self._rng.randrange(10**12):012d}"
            if uid not in self._by_imp:
                return uid

    def new_digits(self, n: int) -> str:
        return f"{self._rng.randrange(10**n):0{n}d}"

    # ---- lookups ---------------------------------------------------------
    def __len__(self) -> int:
        return len(self._payments)

    def get(self, imp_uid: str) -> Payment | None:
        seq = self._by_imp.get(imp_uid)
        return None if seq is None else self._payments[seq]

    def by_merchant(self, merchant_uid: str) -> list[Payment]:
        ref = self._by_merchant.get(merchant_uid)
        if ref is None:
            return []
        if isinstance(ref, int):
            return [self._payments[ref]]
        return [self._payments[s] for s in ref]

    def find_by_merchant(
        self, merchant_uid: str, status: str | None = None, sorting: str = "-started"
    ) -> list[Payment]:
        """Payments of a merchant_uid (optionally one status), in ``sorting`` order."""
        field_name, desc = SORTINGS[sorting]
        get_ts = attrgetter(field_name)
        found = [p for p in self.by_merchant(merchant_uid) if status is None or p.status == status]
        found.sort(key=lambda p: (get_ts(p), p.seq), reverse=desc)
        return found

    def list_by_status(
        self, status: str, from_ts: int, to_ts: int, sorting: str, offset: int, limit: int
    ) -> tuple[int, list[Payment]]:
        """(total in window, one page) for GET /payments/status/{status}."""
        with self.lock:
            idx = self._index[status]
            lo = bisect_left(idx, _key(max(from_ts, 0), 0))
            hi = bisect_right(idx, _key(max(to_ts, 0), _MASK)) if to_ts >= 0 else lo
            total = max(hi - lo, 0)
            if offset >= total:
                return total, []
            field_name, desc = SORTINGS[sorting]
            if _NATURAL_FIELD.get(status) == field_name:
                if desc:
                    stop = hi - offset
                    keys = idx[max(lo, stop - limit) : stop][::-1]
                else:
                    keys = idx[lo + offset : min(hi, lo + offset + limit)]
                seqs = [k & _MASK for k in keys]
            else:
                seqs = self._ordered(status, lo, hi, field_name, desc)[offset : offset + limit]
            return total, [self._payments[s] for s in seqs]

    def _ordered(self, status: str, lo: int, hi: int, field_name: str, desc: bool) -> list[int]:
        """Seqs of index[lo:hi] sorted by another field; cached until the next change."""
        cache_key = (status, lo, hi, field_name, desc, self._version)
        cached = self._cache.entries.get(cache_key)
        if cached is not None:
            self._cache.entries.move_to_end(cache_key)
            return cached
        pays = self._payments
        get_ts = attrgetter(field_name)
        keys = []
        for k in self._index[status][lo:hi]:
            seq = k & _MASK
            keys.append((get_ts(pays[seq]) << _SHIFT) | seq)
        keys.sort(reverse=desc)
        seqs = [k & _MASK for k in keys]
        self._cache.entries[cache_key] = seqs
        while len(self._cache.entries) > self._cache.max_entries:
            self._cache.entries.popitem(last=False)
        return seqs

    # ---- mutations -------------------------------------------------------
    def add(self, p: Payment) -> Payment:
        """Insert one payment (seq assigned here; imp_uid must be unique)."""
        with self.lock:
            if p.imp_uid in self._by_imp:
                raise ValueError(f"duplicate imp_uid {p.imp_uid}")
            p.seq = len(self._payments)
            self._payments.append(p)
            self._link(p)
            key = _key(p.status_ts(), p.seq)
            insort(self._index[p.status], key)
            insort(self._index["all"], key)
            self._version += 1
            return p

    def add_many(self, items: list[Payment]) -> list[Payment]:
        """Bulk insert: validate uniqueness first (all or nothing), then one sort per index."""
        with self.lock:
            seen: set[str] = set()
            for p in items:
                if p.imp_uid:
                    if p.imp_uid in self._by_imp or p.imp_uid in seen:
                        raise ValueError(f"duplicate imp_uid {p.imp_uid}")
                    seen.add(p.imp_uid)
            new_keys: dict[str, list[int]] = {s: [] for s in STATUSES}
            for p in items:
                if not p.imp_uid:
                    p.imp_uid = self.new_imp_uid()
                p.seq = len(self._payments)
                self._payments.append(p)
                self._link(p)
                new_keys[p.status].append(_key(p.status_ts(), p.seq))
            all_keys = self._index["all"]
            for status, keys in new_keys.items():
                if keys:
                    self._index[status].extend(keys)
                    self._index[status].sort()
                    all_keys.extend(keys)
            all_keys.sort()
            self._version += 1
            return items

    def _link(self, p: Payment) -> None:
        self._by_imp[p.imp_uid] = p.seq
        ref = self._by_merchant.get(p.merchant_uid)
        if ref is None:
            self._by_merchant[p.merchant_uid] = p.seq
        elif isinstance(ref, int):
            self._by_merchant[p.merchant_uid] = [ref, p.seq]
        else:
            ref.append(p.seq)

    def update(self, p: Payment, mutate: Callable[[Payment], None]) -> None:
        """Apply ``mutate`` to ``p`` keeping the indexes in step."""
        with self.lock:
            old_status, old_key = p.status, _key(p.status_ts(), p.seq)
            mutate(p)
            new_key = _key(p.status_ts(), p.seq)
            if (old_status, old_key) != (p.status, new_key):
                old_idx = self._index[old_status]
                del old_idx[bisect_left(old_idx, old_key)]
                insort(self._index[p.status], new_key)
                all_idx = self._index["all"]
                del all_idx[bisect_left(all_idx, old_key)]
                insort(all_idx, new_key)
            self._version += 1

    # ---- prepare ---------------------------------------------------------
    def get_prepared(self, merchant_uid: str) -> Prepared | None:
        return self._prepared.get(merchant_uid)

    def put_prepared(self, prepared: Prepared) -> None:
        with self.lock:
            self._prepared[prepared.merchant_uid] = prepared

    # ---- cancel ----------------------------------------------------------
    def cancel(
        self,
        req: CancelRequest,
        now: int,
        render: Callable[[Payment], dict[str, Any]],
        *,
        refused_cards: Iterable[str] = (),
    ) -> CancelResult:
        """Validate and apply a (partial) cancel atomically. A partial cancel the PG refuses
        (sandbox.partial_cancel; `refused_cards`: config `partial_cancel_refused_cards`) is refused."""
        with self.lock:
            p = self._resolve_cancel_target(req)
            if p is None:
                return CancelResult(applied=False, message=MSG_NOT_FOUND, code=CODE_NOTHING_TO_CANCEL)
            base = CancelResult(applied=False, imp_uid=p.imp_uid, merchant_uid=p.merchant_uid)
            remainder = p.remainder
            if p.status == "cancelled" or (p.status == "paid" and remainder <= 0):
                base.message, base.code = MSG_ALREADY_CANCELLED, CODE_NOTHING_TO_CANCEL
                return base
            if p.status != "paid":
                base.message = f"결제완료 상태가 아닌 결제건은 취소할 수 없습니다. (status: {p.status})"
                return base
            if req.checksum is not None and req.checksum != remainder:
                base.message = (
                    "[checksum] 취소가능잔액이 일치하지 않습니다. "
                    f"(요청된 checksum: {req.checksum}, 포트원 취소가능잔액: {remainder})"
                )
                return base
            refusal = vbank_refund_refusal(p.pay_method, p.pg_provider, req)
            if refusal is not None:
                base.message = refusal
                return base
            amount = remainder if req.amount is None or req.amount == 0 else req.amount
            if amount < 0:
                base.message = "취소요청금액은 0보다 커야 합니다."
                return base
            if not has_valid_precision(amount, p.currency):
                base.message = f"취소요청금액의 소수점 자릿수가 통화({p.currency})와 맞지 않습니다."
                return base
            if amount > remainder:
                base.message = f"취소요청금액({amount})이 취소가능잔액({remainder})보다 큽니다."
                return base
            if amount < p.amount:
                refused = partial_cancel.refusal(
                    escrow=p.escrow,
                    pay_method=p.pay_method,
                    pg_provider=p.pg_provider,
                    card_number=p.card_number,
                    refused_cards=refused_cards,
                )
                if refused is not None:
                    base.message = refused
                    return base
            entry = CancelEntry(
                pg_tid=p.tid(),
                amount=amount,
                cancelled_at=now,
                reason=req.reason,
                cancellation_id=self._new_cancellation_id(p),
                refund_account=req.refund_account if p.pay_method == "vbank" else None,
            )

            def apply(pay: Payment) -> None:
                pay.cancel_amount += amount
                if pay.cancel_history is None:
                    pay.cancel_history = []
                pay.cancel_history.append(entry)
                # cancelled_at tracks the latest cancel, partial ones included;
                # status only becomes `cancelled` once nothing is left.
                pay.cancelled_at = now
                pay.cancel_reason = req.reason
                pay.updated_at = now
                if pay.cancel_amount >= pay.amount:
                    pay.status = "cancelled"

            self.update(p, apply)
            return CancelResult(
                applied=True,
                payment=render(p),
                imp_uid=p.imp_uid,
                merchant_uid=p.merchant_uid,
                cancellation_id=entry.cancellation_id,
                amount=amount,
                notice_url=p.notice_url,
                refund_account=entry.refund_account,
            )

    def _resolve_cancel_target(self, req: CancelRequest) -> Payment | None:
        # imp_uid wins; an unknown imp_uid fails even if merchant_uid is valid
        # (cancel/v1/basic.md).
        if req.imp_uid:
            return self.get(req.imp_uid)
        if req.merchant_uid:
            found = self.find_by_merchant(req.merchant_uid)
            for status in ("paid", "cancelled"):
                for p in found:
                    if p.status == status:
                        return p
            return found[0] if found else None
        return None

    def _new_cancellation_id(self, p: Payment) -> str:
        n = len(p.cancel_history or ()) + 1
        return f"{p.imp_uid.removeprefix('imp_')}-{n:02d}-{secrets.token_hex(4)}"

    # ---- helpers for iteration (receipts, tests) -------------------------
    def iter_payments(self) -> Iterable[Payment]:
        return iter(self._payments)
