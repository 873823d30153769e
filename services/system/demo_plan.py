"""The shape of the demo quarter, decided before anything is recorded: which payments happen when,
by whom, in what currency and by what method, and which are refunded later. Pure: no database, no HTTP.

Busier on weekdays than at weekends, mostly in KST business hours, growing a little over the quarter;
KRW mostly, some USD (overseas buyers through Eximbay); cards mostly, a few virtual accounts and
transfers, a few declined cards; some payments refunded in part or in full days later.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from services.core.kst import KST

DAYS = 90
# Payments per KST day before the growth over the quarter, Monday first.
WEEKDAY_MEAN = (9.0, 8.0, 8.0, 7.5, 8.5, 3.0, 2.0)
GROWTH = 0.35  # the last day is this much busier than the first
# Relative weight of each KST hour of the day: quiet at night, busiest in business hours.
HOUR_WEIGHTS = (1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 2, 5, 10, 13, 12, 8, 10, 12, 12, 11, 9, 6, 5, 4, 3, 2, 1.5)
USD_SHARE = 0.08
VBANK_SHARE = 0.06
TRANS_SHARE = 0.04
DECLINED_SHARE = 0.04
PARTIAL_REFUND_SHARE = 0.05
FULL_REFUND_SHARE = 0.05

SURNAMES = (("김", "kim"), ("이", "lee"), ("박", "park"), ("최", "choi"), ("정", "jung"), ("강", "kang"),
            ("조", "cho"), ("윤", "yoon"), ("장", "jang"), ("임", "lim"), ("한", "han"), ("오", "oh"),
            ("서", "seo"), ("신", "shin"), ("권", "kwon"), ("황", "hwang"))  # fmt: skip
GIVEN = (("민준", "minjun"), ("서연", "seoyeon"), ("지호", "jiho"), ("수아", "sua"), ("도윤", "doyun"),
         ("하은", "haeun"), ("시우", "siwoo"), ("지유", "jiyu"), ("예준", "yejun"), ("서윤", "seoyun"),
         ("주원", "juwon"), ("하린", "harin"), ("건우", "gunwoo"), ("채원", "chaewon"), ("현우", "hyunwoo"),
         ("지민", "jimin"), ("은서", "eunseo"), ("준혁", "junhyuk"), ("유진", "yujin"), ("태윤", "taeyoon"))  # fmt: skip
# Phone numbers set aside for fiction, so no real person is ever rung: Korea's 010-0000-xxxx (never
# issued), NANP 555-0100..0199, Ofcom's 020 7946 0xxx, ARCEP's 01 99 00 xx xx, the Bundesnetzagentur's
# 030 23125 xxx, ACMA's 02 5550 xxxx.
OVERSEAS = (("John Smith", "+1 415 555 0100"), ("Emma Brown", "+44 20 7946 0018"), ("Liam Walker", "+1 212 555 0147"),
            ("Sophie Martin", "+33 1 99 00 18 90"), ("Lucas Meyer", "+49 30 23125 182"),
            ("Olivia Chen", "+1 604 555 0163"), ("Noah Wilson", "+61 2 5550 5432"))  # fmt: skip
MAIL_DOMAINS = ("example.com", "example.net", "example.org")
CARDS = (("신한카드", "366"), ("삼성카드", "365"), ("현대카드", "367"), ("KB국민카드", "381"), ("롯데카드", "368"),
         ("하나카드", "374"), ("BC카드", "361"), ("NH농협카드", "371"), ("우리카드", "041"))  # fmt: skip
BANKS = (("국민은행", "004"), ("신한은행", "088"), ("우리은행", "020"), ("하나은행", "081"), ("농협은행", "011"))
DECLINES = ("카드 한도초과", "잔액 부족", "유효기간 오류", "도난/분실 카드")
REFUND_REASONS = (
    "고객 요청: 탁송 일정 취소",
    "고객 요청: 중복 결제",
    "탁송 거리 변경으로 차액 환불",
    "차량 인도 지연 보상",
)


@dataclass(frozen=True)
class Buyer:
    name: str
    email: str
    phone: str


@dataclass(frozen=True)
class Planned:
    at: datetime  # when the buyer paid (UTC); for a virtual account, when it was issued
    currency: str
    method: str  # card | vbank | trans | declined
    buyer: Buyer
    issuer: tuple[str, str]  # (name, code): card company, or bank of the virtual account / transfer
    deposit_after: timedelta = timedelta(0)  # virtual account: from issue to deposit
    refund: str | None = None  # None | "partial" | "full"
    refund_at: datetime | None = None
    reason: str = ""  # decline reason, or refund reason
    escrow: bool = False


def korean_buyer(rng: random.Random) -> Buyer:
    (surname, s_roman), (given, g_roman) = rng.choice(SURNAMES), rng.choice(GIVEN)
    email = f"{g_roman}.{s_roman}{rng.randint(1, 999)}@{rng.choice(MAIL_DOMAINS)}"
    return Buyer(surname + given, email, f"010-0000-{rng.randint(0, 9999):04d}")


def overseas_buyer(rng: random.Random) -> Buyer:
    name, phone = rng.choice(OVERSEAS)
    return Buyer(name, f"{name.lower().replace(' ', '.')}{rng.randint(1, 99)}@{rng.choice(MAIL_DOMAINS)}", phone)


def _count(rng: random.Random, mean: float) -> int:
    """About `mean`, never fewer than one: a business open every day, quieter some days."""
    return max(1, round(rng.gauss(mean, mean * 0.3)))


def _moment(rng: random.Random, day: datetime) -> datetime:
    """A moment of this KST day weighted by HOUR_WEIGHTS."""
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    return day + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))


def plan_quarter(rng: random.Random, now: datetime, *, days: int = DAYS) -> list[Planned]:
    """Every payment of the last `days` KST days (today until `now` minus an hour), oldest first."""
    latest = now - timedelta(hours=1)
    today = datetime.combine(now.astimezone(KST).date(), time(0), KST)
    planned: list[Planned] = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        mean = WEEKDAY_MEAN[day.weekday()] * (1 + GROWTH * (days - 1 - back) / max(days - 1, 1))
        for _ in range(_count(rng, mean)):
            at = _moment(rng, day)
            if at < latest:  # today's later hours have not happened yet
                planned.append(_one(rng, at.astimezone(now.tzinfo), now))
    planned.sort(key=lambda p: p.at)
    return planned


def _one(rng: random.Random, at: datetime, now: datetime) -> Planned:
    if rng.random() < USD_SHARE:
        return _refund(rng, Planned(at, "USD", "card", overseas_buyer(rng), rng.choice(CARDS[:3])), now)
    buyer = korean_buyer(rng)
    roll = rng.random()
    if roll < DECLINED_SHARE:
        return Planned(at, "KRW", "declined", buyer, rng.choice(CARDS), reason=rng.choice(DECLINES))
    if roll < DECLINED_SHARE + VBANK_SHARE:
        deposit = timedelta(hours=rng.uniform(0.5, 40))
        if at + deposit > now - timedelta(minutes=30):
            deposit = max(timedelta(minutes=5), (now - timedelta(minutes=30)) - at)
        return Planned(at, "KRW", "vbank", buyer, rng.choice(BANKS), deposit_after=deposit)
    method = "trans" if roll < DECLINED_SHARE + VBANK_SHARE + TRANS_SHARE else "card"
    issuer = rng.choice(BANKS) if method == "trans" else rng.choice(CARDS)
    return _refund(rng, Planned(at, "KRW", method, buyer, issuer), now)


def _refund(rng: random.Random, planned: Planned, now: datetime) -> Planned:
    """A card or transfer payment may be refunded one to six days later (never in the future)."""
    roll = rng.random()
    if roll >= PARTIAL_REFUND_SHARE + FULL_REFUND_SHARE:
        return planned
    refund_at = planned.at + timedelta(days=rng.uniform(1, 6), hours=rng.uniform(0, 8))
    if refund_at > now - timedelta(hours=1):
        return planned
    kind = "partial" if roll < PARTIAL_REFUND_SHARE else "full"
    return dataclasses.replace(planned, refund=kind, refund_at=refund_at, reason=rng.choice(REFUND_REASONS))
