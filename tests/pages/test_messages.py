"""The message catalogs: Korean and English say the same things, and every key the pages ask for
exists (a missing one would show its key to ops staff instead of a sentence)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from dashboard.i18n import LANGUAGES, catalog
from services.alerts.store import AlertKind
from services.refunds.outcomes import RefundOutcome

ROOT = Path(__file__).resolve().parents[2]
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_.]*[a-z0-9])["']\s*[,)]""")  # whole keys, not prefixes


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_the_same_keys_and_placeholders() -> None:
    korean = catalog("ko")
    for language in LANGUAGES:
        other = catalog(language)
        assert set(other) == set(korean), (language, sorted(set(other) ^ set(korean))[:20])
        for key, text in korean.items():
            assert _fields(other[key]) == _fields(text), (language, key)


def test_every_key_written_in_the_code_exists() -> None:
    korean = catalog("ko")
    sources = [*ROOT.glob("views/*.py"), *ROOT.glob("dashboard/*.py"), ROOT / "app.py"]
    used = {key for path in sources for key in LITERAL_KEY.findall(path.read_text(encoding="utf-8"))}
    assert used, "no t('...') call found: the pattern no longer matches the code"
    assert not sorted(used - set(korean))


@pytest.mark.parametrize(
    ("prefix", "values"),
    [
        ("alerts.kind_", [str(kind) for kind in AlertKind]),
        ("alerts.explain_", [str(kind) for kind in AlertKind]),
        ("refunds.outcome_", [str(outcome) for outcome in RefundOutcome]),
    ],
)
def test_every_kind_the_services_name_has_its_words(prefix: str, values: list[str]) -> None:
    korean = catalog("ko")
    assert not [value for value in values if prefix + value not in korean]
