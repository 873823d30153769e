"""Sign-in page."""

import streamlit as st

from dashboard.auth import oidc_configured, sign_in
from dashboard.i18n import t
from dashboard.runtime import get_runtime
from services.auth import accounts as users
from services.core.errors import Forbidden

st.title(t("login.title"))
message = st.session_state.pop("auth_message", None)
if message:
    st.warning(message)
if oidc_configured():
    if st.button(t("login.oidc"), type="primary"):
        st.login()
else:
    with st.form("login"):
        username = st.text_input(t("login.username"))
        password = st.text_input(t("login.password"), type="password")
        submitted = st.form_submit_button(t("login.submit"), type="primary")
    if submitted:
        try:
            actor = users.authenticate(get_runtime(), username=username, password=password)
        except Forbidden:
            st.error(t("login.refused"))
        else:
            sign_in(actor)
            st.rerun()
