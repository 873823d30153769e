"""The refund dialog's preset reasons: a preset stores its Korean words, 기타 stores the typed text
and requires it, anything else is refused."""

from __future__ import annotations

import pytest

from dashboard.i18n import catalog
from services.core.errors import InvalidRequest
from services.refunds.engine import MAX_REASON_LENGTH
from services.refunds.reasons import PRESET_TEXT, PRESETS, ReasonPreset, reason_text


def test_presets_store_their_korean_words_in_order() -> None:
    assert [PRESET_TEXT[p] for p in PRESETS] == ["고객 요청 취소", "중복 결제", "탁송 취소·불가", "결제 오류", "기타"]
    assert reason_text("duplicate_payment", "ignored") == "중복 결제"
    assert reason_text(ReasonPreset.DELIVERY_CANCELLED) == "탁송 취소·불가"


def test_other_requires_text_and_stores_it() -> None:
    for blank in (None, "", "   "):
        with pytest.raises(InvalidRequest):
            reason_text("other", blank)
    assert reason_text("other", "  차량 점검 일정 변경 ") == "차량 점검 일정 변경"
    with pytest.raises(InvalidRequest):
        reason_text("other", "가" * (MAX_REASON_LENGTH + 1))


@pytest.mark.parametrize("code", ["", "기타", "refund", None, "OTHER"])
def test_an_unknown_preset_is_refused(code: object) -> None:
    with pytest.raises(InvalidRequest):
        reason_text(code, "text")


def test_the_dialog_shows_the_stored_words_in_korean_and_has_english_ones() -> None:
    for preset in PRESETS:
        assert catalog("ko")[f"refund_dialog.reason_{preset}"] == PRESET_TEXT[preset]
        assert catalog("en")[f"refund_dialog.reason_{preset}"].isascii()
