"""Streamlit entry: only the router. Pages live in pages/, logic in services/.

The navigation holds only the pages the signed-in role may open; each page also checks the
role itself (dashboard.auth.gate), so a hidden page is never the only guard.
"""

from __future__ import annotations

import streamlit as st

from dashboard.auth import current_actor
from dashboard.chrome import render_sidebar
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.alerts import desk as alert_desk
from services.auth.access import Permission

st.set_page_config(page_title="Chekar Payments Ops", page_icon="🚗", layout="wide")

# (file, message key for the title, icon, permission needed)
PAGES = [
    ("pages/overview.py", "nav.overview", ":material/dashboard:", Permission.VIEW),
    ("pages/payments.py", "nav.payments", ":material/payments:", Permission.VIEW),
    ("pages/payment_detail.py", "nav.payment_detail", ":material/receipt_long:", Permission.VIEW),
    ("pages/refunds.py", "nav.refunds", ":material/undo:", Permission.REFUND),
    ("pages/alerts.py", "nav.alerts", ":material/notification_important:", Permission.VIEW),
    ("pages/reports.py", "nav.reports", ":material/bar_chart:", Permission.VIEW),
    ("pages/webhooks.py", "nav.webhooks", ":material/webhook:", Permission.VIEW),
    ("pages/test_payment.py", "nav.test_payment", ":material/credit_card:", Permission.TEST_PAYMENT),
    ("pages/admin.py", "nav.admin", ":material/admin_panel_settings:", Permission.MANAGE_USERS),
]

actor = current_actor()
if actor is None:
    navigation = st.navigation([st.Page("pages/login.py", title=t("nav.login"), icon=":material/login:")])
else:
    live = get_runtime().settings.is_live
    # Open alerts counted in the navigation, so they are seen from every page.
    open_alerts = alert_desk.open_count(get_runtime(), actor=actor)
    titles = {"nav.alerts": t("nav.alerts_open", count=open_alerts)} if open_alerts else {}
    allowed = [
        st.Page(path, title=titles.get(key) or t(key), icon=icon, default=(path == "pages/overview.py"))
        for path, key, icon, permission in PAGES
        if actor.can(permission) and not (live and path == "pages/test_payment.py")
    ]
    navigation = st.navigation(allowed)
    render_sidebar(actor)
navigation.run()
