"""What every signed-in page shows around it: mode, LIVE banner, language, user, sign-out."""

from __future__ import annotations

import streamlit as st

from dashboard.auth import sign_out
from dashboard.format import plain
from dashboard.i18n import LANGUAGES, current_language, t
from dashboard.runtime import get_runtime
from services.auth.access import Actor


def render_sidebar(actor: Actor) -> None:
    mode = get_runtime().settings.portone_mode
    if mode == "live":
        st.error(t("app.live_banner"))
    with st.sidebar:
        st.markdown(f"**{t('app.title')}**")
        color = {"sandbox": "blue", "test": "orange", "live": "red"}[mode]
        st.markdown(f":{color}-badge[{t('app.mode_' + mode)}]")
        st.caption(t("app.signed_in_as", user=plain(actor.username), role=t(f"role.{actor.role}")))
        languages = list(LANGUAGES)
        choice = st.selectbox(
            t("app.language"),
            languages,
            index=languages.index(current_language()),
            format_func=LANGUAGES.__getitem__,
            key="lang_select",
        )
        if choice != current_language():
            st.session_state["lang"] = choice
            st.rerun()
        if st.button(t("app.sign_out"), key="sign_out"):
            sign_out()
            st.rerun()
