"""The process-wide runtime for Streamlit pages (engine and gateway created once)."""

from __future__ import annotations

import streamlit as st

from services.runtime import Runtime, build_runtime


@st.cache_resource
def get_runtime() -> Runtime:
    return build_runtime()
