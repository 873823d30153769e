"""Partial cancels PortOne (the PG behind it) refuses.

help/core-service/how-to-use/impossible-partial-cancel.md ("부분 취소가 불가한 케이스"):

- escrow payments ("에스크로 거래 건의 경우 부분 취소가 불가합니다");
- phone payments, except through KG Inicis ("휴대폰결제의 경우 이니시스만 부분 취소가 가능합니다");
- foreign-issued cards and card payments combined with card points ("해외 카드 ... 복합결제"): only
  the card's acquirer knows, so nothing in the payment object says so. The sandbox stands for that
  with a config switch: the card numbers listed in ``partial_cancel_refused_cards`` (V1 and V2).

A partial cancel is one that would leave part of the payment paid. PortOne's wording of the refusal
is not in the docs; these messages follow the Korean style of its API messages.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.payments import mask_card_number, normalize_card_number

# PG names (V1 `pg_provider`, V2 `PgProvider` lowercased) of KG Inicis, the one PG that partially
# cancels phone payments.
INICIS_PGS = frozenset({"inicis", "html5_inicis", "inicis_v2", "inicis_unified"})

MSG_ESCROW = "에스크로 결제 건은 부분취소가 불가능합니다. 전액취소만 가능합니다."
MSG_PHONE = "휴대폰 결제 건은 부분취소가 불가능합니다(KG이니시스 제외). 전액취소만 가능합니다."
MSG_CARD = "[카드사 정책] 해외카드 또는 복합결제 건은 부분취소가 불가능합니다. 전액취소만 가능합니다."


def masked(cards: Iterable[str]) -> frozenset[str]:
    """The configured card numbers as the payment stores them (masked)."""
    return frozenset(mask_card_number(normalize_card_number(card)) for card in cards)


def refusal(
    *, escrow: bool, pay_method: str, pg_provider: str, card_number: str | None, refused_cards: Iterable[str]
) -> str | None:
    """Why a partial cancel of this payment is refused (None: it is not)."""
    if escrow:
        return MSG_ESCROW
    if pay_method in ("phone", "mobile") and pg_provider.lower() not in INICIS_PGS:
        return MSG_PHONE
    if card_number is not None and card_number in masked(refused_cards):
        return MSG_CARD
    return None
