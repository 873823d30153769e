import streamlit as st

from dashboard.runtime import get_runtime
from services.overview import open_alert_count, totals_by_currency

runtime = get_runtime()
st.title("체카 결제 운영")
st.caption(f"모드: {runtime.settings.portone_mode.upper()}")
totals = totals_by_currency(runtime)
if not totals:
    st.info("아직 결제가 없습니다. 테스트 결제를 실행해 보세요.")
for row in totals:
    cols = st.columns(3)
    cols[0].metric(f"결제 ({row.currency})", f"{row.paid_amount:,}", f"{row.paid_count}건")
    cols[1].metric(f"환불 ({row.currency})", f"{row.refunded_amount:,}")
    cols[2].metric(f"순매출 ({row.currency})", f"{row.net_amount:,}")
st.metric("미해결 알림", open_alert_count(runtime))
