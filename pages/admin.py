"""Placeholder until this page is built."""

import streamlit as st

from dashboard.auth import gate

gate()
st.info("…")
