"""The layering DESIGN.md asks for, checked on the source: business logic in services/ never
touches Streamlit; pages and the dashboard's shared pieces hold no SQL and no HTTP (they call
services/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("services", {"streamlit", "pandas"}),
        ("pages", {"sqlalchemy", "httpx", "requests", "psycopg", "sqlite3", "portone_server_sdk"}),
        ("dashboard", {"sqlalchemy", "httpx", "requests", "psycopg", "sqlite3", "portone_server_sdk"}),
    ],
)
def test_layers_import_only_what_they_may(folder: str, forbidden: set[str]) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    offending = {str(path.relative_to(ROOT)): sorted(_imported_packages(path) & forbidden) for path in files}
    assert not {path: names for path, names in offending.items() if names}
