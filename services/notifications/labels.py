"""Words for notifications, Korean first then English (ops staff read Korean).

The Korean alert names are the dashboard's (dashboard/messages/ko/alerts.toml `kind_*`; a test
keeps the two equal): services do not import the dashboard.
"""

from __future__ import annotations

SEVERITY_KO = {"critical": "긴급", "high": "높음", "medium": "보통", "low": "낮음"}

ALERT_KIND_KO = {
    "amount_mismatch": "금액 불일치(위변조)",
    "payment_without_order": "주문 없는 결제",
    "refund_outcome_unknown": "환불 결과 미확인",
    "refund_mismatch": "환불 불일치",
    "refund_cancel_overdue": "포트원 환불 처리 지연",
    "forgery_refund_account_needed": "위변조 가상계좌: 환불 계좌 필요",
    "missing_in_db": "우리 기록에 없음",
    "unknown_to_portone": "포트원에 없음",
    "status_mismatch": "상태 불일치",
    "refund_total_mismatch": "환불 합계 불일치",
    "stuck_ready": "입금 대기 장기화",
    "webhook_unverified": "검증 실패 웹훅",
    "webhook_gap": "웹훅 누락",
    "unsupported_currency": "취급하지 않는 통화",
    "order_paid_twice": "중복 결제된 주문",
    "reconcile_stale": "정기 대조 멈춤",
}

PRODUCT = "[체카 결제]"


def severity_words(severity: str) -> str:
    return f"{SEVERITY_KO.get(severity, severity)} {severity}"


def alert_kind_words(kind: str) -> str:
    label = ALERT_KIND_KO.get(kind)
    return f"{label} ({kind})" if label else kind
