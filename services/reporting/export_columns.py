"""What each export is called and what its columns are: keys, and headings in Korean and English.

A column holding a time says in its heading that the time is KST. The order here is the order of
the cells each export query's row function writes (services/reporting/export_queries.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.reporting.export_writer import csv_text

LANGUAGES = ("ko", "en")
KST_SUFFIX = {"ko": " (KST UTC+09:00)", "en": " (KST UTC+09:00)"}


class ExportKind(enum.StrEnum):
    PAYMENTS = "payments"
    REFUNDS = "refunds"
    ALERTS = "alerts"
    SUMMARY = "summary"


@dataclass(frozen=True)
class Column:
    """One column: `key` names it in code, `ko` and `en` are its headings; a KST time says so in both."""

    key: str
    ko: str
    en: str
    kst_time: bool = False

    def header(self, language: str) -> str:
        base = self.ko if language == "ko" else self.en
        return base + (KST_SUFFIX[language] if self.kst_time else "")


PAYMENT_COLUMNS = (
    Column("imp_uid", "포트원 결제번호", "imp_uid"),
    Column("merchant_uid", "주문번호", "merchant_uid"),
    Column("status", "상태", "status"),
    Column("paid_at", "결제시각", "paid_at", kst_time=True),
    Column("cancelled_at", "취소시각", "cancelled_at", kst_time=True),
    Column("currency", "통화", "currency"),
    Column("amount", "결제금액", "amount"),
    Column("cancel_amount", "환불금액", "refunded_amount"),
    Column("remaining", "잔액", "remaining_amount"),
    Column("pg_provider", "PG사", "pg_provider"),
    Column("pay_method", "결제수단", "pay_method"),
    Column("card_name", "카드사", "card_name"),
    Column("card_number", "카드번호(마스킹)", "card_number_masked"),
    Column("buyer_name", "구매자명", "buyer_name"),
    Column("buyer_email", "구매자 이메일", "buyer_email"),
    Column("buyer_tel", "구매자 전화번호", "buyer_phone"),
    Column("name", "주문명", "order_name"),
    Column("verified", "주문금액 일치", "matches_order"),
)
REFUND_COLUMNS = (
    Column("refund_id", "환불번호", "refund_id"),
    Column("refunded_at", "환불시각", "refunded_at", kst_time=True),
    Column("requested_at", "요청시각", "requested_at", kst_time=True),
    Column("imp_uid", "포트원 결제번호", "imp_uid"),
    Column("merchant_uid", "주문번호", "merchant_uid"),
    Column("status", "상태", "status"),
    Column("currency", "통화", "currency"),
    Column("amount", "환불금액", "amount"),
    Column("reason", "사유", "reason"),
    Column("requested_by", "요청자", "requested_by"),
    Column("source", "경로", "source"),
    Column("cancellation_id", "포트원 취소번호", "portone_cancellation_id"),
    Column("error_message", "오류", "error_message"),
    Column("buyer_name", "구매자명", "buyer_name"),
)
ALERT_COLUMNS = (
    Column("alert_id", "알림번호", "alert_id"),
    Column("created_at", "발생시각", "raised_at", kst_time=True),
    Column("kind", "종류", "kind"),
    Column("severity", "심각도", "severity"),
    Column("status", "상태", "status"),
    Column("imp_uid", "포트원 결제번호", "imp_uid"),
    Column("merchant_uid", "주문번호", "merchant_uid"),
    Column("db_value", "우리 기록", "db_value"),
    Column("portone_value", "포트원 기록", "portone_value"),
    Column("message", "내용", "message"),
    Column("acknowledged_by", "확인자", "acknowledged_by"),
    Column("resolved_by", "해결자", "resolved_by"),
    Column("resolution_note", "해결 메모", "resolution_note"),
    Column("updated_at", "최종변경", "updated_at", kst_time=True),
)
SUMMARY_COLUMNS = (
    Column("period", "기간(KST)", "period_kst"),
    Column("currency", "통화", "currency"),
    Column("pg_provider", "PG사", "pg_provider"),
    Column("pay_method", "결제수단", "pay_method"),
    Column("paid_count", "결제건수", "paid_count"),
    Column("gross", "결제금액", "gross"),
    Column("refund_count", "환불건수", "refund_count"),
    Column("refunds", "환불금액", "refunds"),
    Column("net", "순매출", "net"),
)
COLUMNS = {
    ExportKind.PAYMENTS: PAYMENT_COLUMNS,
    ExportKind.REFUNDS: REFUND_COLUMNS,
    ExportKind.ALERTS: ALERT_COLUMNS,
    ExportKind.SUMMARY: SUMMARY_COLUMNS,
}


def header_line(kind: ExportKind, language: str) -> str:
    """The export's heading row in `language` ("ko" or "en"), as CSV text."""
    return csv_text([[column.header(language) for column in COLUMNS[kind]]])
