"""Korean time (KST, Asia/Seoul, UTC+9 all year): what a calendar day means on every screen and export.

Times are stored in UTC; a KST calendar day is the half-open UTC interval from its midnight to the next.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")


def kst_today(now: datetime | None = None) -> date:
    """Today's KST calendar day (`now` defaults to the current time)."""
    return (now or datetime.now(UTC)).astimezone(KST).date()


def kst_midnight(day: date) -> datetime:
    """The UTC instant at which KST calendar day `day` begins."""
    return datetime.combine(day, time.min, tzinfo=KST).astimezone(UTC)


def kst_day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """KST calendar days `first`..`last` (inclusive) as a half-open UTC interval."""
    return kst_midnight(first), kst_midnight(last + timedelta(days=1))
