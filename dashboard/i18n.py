"""The message catalog: every visible string comes from dashboard/messages/<lang>/*.toml.

Each area (page) keeps its own file, `[area]` tables inside; keys are `area.name`.
Korean is the default; English is one switch away.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import streamlit as st

LANGUAGES = {"ko": "한국어", "en": "English"}
DEFAULT_LANGUAGE = "ko"
_DIR = Path(__file__).parent / "messages"


def _flatten(prefix: str, table: dict[str, Any], out: dict[str, str]) -> None:
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _flatten(name, value, out)
        else:
            out[name] = str(value)


@cache
def catalog(language: str) -> dict[str, str]:
    messages: dict[str, str] = {}
    for path in sorted((_DIR / language).glob("*.toml")):
        with path.open("rb") as handle:
            _flatten("", tomllib.load(handle), messages)
    return messages


def current_language() -> str:
    language = st.session_state.get("lang", DEFAULT_LANGUAGE)
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def t(key: str, **values: Any) -> str:
    """The message `key` in the current language, formatted with `values`.

    Falls back to Korean, then to the key itself, so a missing translation is visible, not fatal.
    """
    text = catalog(current_language()).get(key) or catalog(DEFAULT_LANGUAGE).get(key) or key
    return text.format(**values) if values else text
