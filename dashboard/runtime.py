"""The runtime for Streamlit pages: engine and gateway created once per configuration.

Keyed by the settings that pick the database and PortOne, so tests (AppTest) that point the
environment at another database get their own runtime instead of a stale cached one.
"""

from __future__ import annotations

import os

import streamlit as st

from services.core.config import Settings
from services.runtime import Runtime, build_runtime

_KEYS = ("DATABASE_URL", "PORTONE_MODE", "PORTONE_API_URL")


@st.cache_resource(show_spinner=False)
def _runtime_for(key: tuple[str | None, ...]) -> Runtime:  # noqa: ARG001 - the cache key
    return build_runtime(Settings())


def get_runtime() -> Runtime:
    return _runtime_for(tuple(os.environ.get(name) for name in _KEYS))
