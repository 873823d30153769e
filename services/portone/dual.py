"""One gateway for a merchant with payments in both PortOne V1 and V2 (while moving between them).

Routing rule, by the payment identifier our services hold in `imp_uid`:

- an id starting with `imp_` is a V1 imp_uid: PortOne V1 issues every imp_uid as `imp_` + digits;
- any other id is a V2 paymentId (which our orders choose: `merchant_uid` IS the paymentId, and
  ours never start with `imp_`).

Calls that name no payment go where new payments are made (`new_payments`, V2 by default):
`prepare` and `get_prepared`. `find_by_merchant_uid` asks V2 first (its paymentId is the
merchant_uid), then V1. `get_payments` splits the ids by the rule, asks each side once and answers
in the order asked. `list_payments` pages over both: V1's matching payments first, then V2's, each
in the requested order, with `total` the sum; a page that straddles the two is filled from both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal

from services.core.errors import GatewayNotFound, GatewayRejected
from services.portone.banks import RefundAccount
from services.portone.types import GatewayPayment, PaymentPage, PortOneGateway, Prepared

V1_PREFIX = "imp_"


def is_v1_id(imp_uid: str) -> bool:
    return imp_uid.startswith(V1_PREFIX)


class DualGateway:
    """`PortOneGateway` over a V1 and a V2 gateway; closing it closes both."""

    def __init__(self, *, v1: PortOneGateway, v2: PortOneGateway, new_payments: Literal["v1", "v2"] = "v2") -> None:
        self.v1 = v1
        self.v2 = v2
        self._new = v2 if new_payments == "v2" else v1

    def _for(self, imp_uid: str) -> PortOneGateway:
        return self.v1 if is_v1_id(imp_uid) else self.v2

    def close(self) -> None:
        try:
            self.v1.close()
        finally:
            self.v2.close()

    def get_payment(self, imp_uid: str) -> GatewayPayment:
        return self._for(imp_uid).get_payment(imp_uid)

    def get_payments(self, imp_uids: Sequence[str]) -> list[GatewayPayment]:
        wanted = list(dict.fromkeys(imp_uids))
        v1_ids = [uid for uid in wanted if is_v1_id(uid)]
        v2_ids = [uid for uid in wanted if not is_v1_id(uid)]
        found = {p.imp_uid: p for p in (self.v1.get_payments(v1_ids) if v1_ids else [])}
        found.update({p.imp_uid: p for p in (self.v2.get_payments(v2_ids) if v2_ids else [])})
        return [found[uid] for uid in wanted if uid in found]

    def find_by_merchant_uid(self, merchant_uid: str) -> GatewayPayment:
        try:
            return self.v2.find_by_merchant_uid(merchant_uid)
        except GatewayNotFound:
            return self.v1.find_by_merchant_uid(merchant_uid)

    def list_payments(
        self,
        *,
        status: str = "all",
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 1,
        limit: int = 1000,
        sorting: str = "-started",
    ) -> PaymentPage:
        def v1_page(number: int, size: int) -> PaymentPage:
            return self.v1.list_payments(
                status=status, since=since, until=until, page=number, limit=size, sorting=sorting
            )

        def v2_page(number: int, size: int) -> PaymentPage:
            return self.v2.list_payments(
                status=status, since=since, until=until, page=number, limit=size, sorting=sorting
            )

        try:
            first = v1_page(page, limit)
        except GatewayRejected:
            # V1 refuses a page past its last one; its total still places the V2 part.
            first = PaymentPage(payments=(), total=v1_page(1, 1).total, next_page=None)
        v1_total = first.total
        items = list(first.payments)
        # Unreadable rows take their place in PortOne's pages; placing V2's part counts them too
        # (a row misplaced by one is still found: reconciliation asks for ours directly).
        unreadable = list(first.unreadable)
        offset = max(0, (page - 1) * limit - v1_total)  # where this page starts within V2's list
        need = limit - len(items) - len(unreadable)
        more_v2 = False  # V2 may hold more after this page than its total shows (see PortOneV2Client)
        if need <= 0:
            v2_total = v2_page(1, 1).total  # at least 1 when V2 has any, under either totalCount reading
        else:
            number, skip = divmod(offset, limit)
            part = v2_page(number + 1, limit)
            v2_total = part.total
            items += part.payments[skip : skip + need]
            unreadable += part.unreadable
            more_v2 = part.next_page is not None
            if skip and len(items) < limit and part.next_page is not None:
                later = v2_page(number + 2, limit)
                v2_total = max(v2_total, later.total)
                items += later.payments[: limit - len(items)]
                unreadable += later.unreadable
                more_v2 = later.next_page is not None
        total = v1_total + v2_total
        next_page = page + 1 if page * limit < total or more_v2 else None
        return PaymentPage(payments=tuple(items), total=total, next_page=next_page, unreadable=tuple(unreadable))

    def cancel_payment(
        self,
        *,
        imp_uid: str,
        amount: Decimal | None,
        checksum: Decimal,
        reason: str,
        refund_account: RefundAccount | None = None,
        pg_provider: str | None = None,
    ) -> GatewayPayment:
        return self._for(imp_uid).cancel_payment(
            imp_uid=imp_uid,
            amount=amount,
            checksum=checksum,
            reason=reason,
            refund_account=refund_account,
            pg_provider=pg_provider,
        )

    def prepare(self, *, merchant_uid: str, amount: Decimal, currency: str) -> Prepared:
        return self._new.prepare(merchant_uid=merchant_uid, amount=amount, currency=currency)

    def get_prepared(self, merchant_uid: str) -> Prepared:
        return self._new.get_prepared(merchant_uid)
