"""The preset refund reasons the dashboard's refund dialog offers.

An operator picks one preset; the reason stored with the refund (and shown in its history and
audit trail) is the preset's Korean text, the words ops staff and customer service search for.
Only OTHER ("기타") asks for typed text, and then the typed text is the reason.
"""

from __future__ import annotations

import enum

from services.core.errors import InvalidRequest
from services.refunds.engine import checked_reason


class ReasonPreset(enum.StrEnum):
    CUSTOMER_REQUEST = "customer_request"
    DUPLICATE_PAYMENT = "duplicate_payment"
    DELIVERY_CANCELLED = "delivery_cancelled"
    PAYMENT_ERROR = "payment_error"
    OTHER = "other"


# The stored words, in the order the dialog offers them (the first is preselected).
PRESET_TEXT: dict[ReasonPreset, str] = {
    ReasonPreset.CUSTOMER_REQUEST: "고객 요청 취소",
    ReasonPreset.DUPLICATE_PAYMENT: "중복 결제",
    ReasonPreset.DELIVERY_CANCELLED: "탁송 취소·불가",
    ReasonPreset.PAYMENT_ERROR: "결제 오류",
    ReasonPreset.OTHER: "기타",
}
PRESETS: tuple[ReasonPreset, ...] = tuple(PRESET_TEXT)


def reason_text(preset: object, typed: str | None = None) -> str:
    """The reason to store for `preset` (a ReasonPreset or its code): the preset's Korean text,
    or, for OTHER, the typed text (required). InvalidRequest for an unknown preset or OTHER
    without text; the engine's length limit applies to typed text."""
    try:
        code = ReasonPreset(str(preset))
    except ValueError:
        raise InvalidRequest("pick one of the refund reasons") from None
    if code is ReasonPreset.OTHER:
        if not (typed or "").strip():
            raise InvalidRequest("describe the reason when the reason is 'other'")
        return checked_reason(typed)
    return PRESET_TEXT[code]
