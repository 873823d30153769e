"""Streamlit entry: only the router. Pages live in views/, logic in services/.

The navigation holds only the pages the signed-in role may open; each page also checks the
role itself (dashboard.auth.gate), so a hidden page is never the only guard.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.auth import current_actor, send_cookie_requests
from dashboard.chrome import render_sidebar
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.alerts import desk as alert_desk
from services.auth.access import Permission

st.set_page_config(page_title="Chekar Payments Ops", page_icon="🚗", layout="wide")

# (file, message key for the title, icon, permission needed)
PAGES = [
    ("views/overview.py", "nav.overview", ":material/dashboard:", Permission.VIEW),
    ("views/payments.py", "nav.payments", ":material/payments:", Permission.VIEW),
    ("views/payment_detail.py", "nav.payment_detail", ":material/receipt_long:", Permission.VIEW),
    ("views/refunds.py", "nav.refunds", ":material/undo:", Permission.REFUND),
    ("views/alerts.py", "nav.alerts", ":material/notification_important:", Permission.VIEW),
    ("views/reports.py", "nav.reports", ":material/bar_chart:", Permission.VIEW),
    ("views/webhooks.py", "nav.webhooks", ":material/webhook:", Permission.VIEW),
    ("views/test_payment.py", "nav.test_payment", ":material/credit_card:", Permission.TEST_PAYMENT),
    ("views/admin.py", "nav.admin", ":material/admin_panel_settings:", Permission.MANAGE_USERS),
]

actor = current_actor()
if actor is None:
    # Signed out, every page's address shows the sign-in (no "page not found" for a link); once
    # signed in, the same address (and its query) is the page itself.
    navigation = st.navigation(
        [
            st.Page(
                "views/login.py",
                title=t("nav.login"),
                icon=":material/login:",
                url_path=Path(path).stem,
                default=(path == "views/overview.py"),
            )
            for path, _key, _icon, _permission in PAGES
        ],
        position="hidden",
    )
else:
    live = get_runtime().settings.is_live
    # Open alerts counted in the navigation, so they are seen from every page.
    open_alerts = alert_desk.open_count(get_runtime(), actor=actor)
    titles = {"nav.alerts": t("nav.alerts_open", count=open_alerts)} if open_alerts else {}
    allowed = [
        st.Page(path, title=titles.get(key) or t(key), icon=icon, default=(path == "views/overview.py"))
        for path, key, icon, permission in PAGES
        if actor.can(permission) and not (live and path == "views/test_payment.py")
    ]
    navigation = st.navigation(allowed)
    render_sidebar(actor)
send_cookie_requests()
navigation.run()
