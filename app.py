"""Streamlit entry: only the router. Pages live in pages/, logic in services/."""

import streamlit as st

st.set_page_config(page_title="체카 결제 운영", page_icon="🚗", layout="wide")
navigation = st.navigation([st.Page("pages/overview.py", title="개요", default=True)])
navigation.run()
