"""ARCHITECTURE.md is the newcomer's map: every file or folder it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "ARCHITECTURE.md"

# `services/refunds/engine.py`, `api/routes/`, `Makefile` ... written in backticks
PATH_IN_BACKTICKS = re.compile(r"`([A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]*)+|[A-Za-z0-9_\-]+\.(?:py|md|toml|ini|txt))`")


def named_paths(text: str) -> list[str]:
    """Every path named in backticks; a bare file name in a line that names a folder first (a row of
    the rooms table: `services/refunds/` ... `engine.py`) is read inside that folder."""
    paths = []
    for line in text.splitlines():
        folder = ""
        for match in PATH_IN_BACKTICKS.finditer(line):
            name = match.group(1)
            if name.endswith("/") and not folder:
                folder = name
            paths.append(name if "/" in name or not folder else folder + name)
    return paths


def test_the_map_names_paths_the_way_this_test_reads_them() -> None:
    assert named_paths("see `services/refunds/engine.py`, `api/` and `lease.py`, not `make run`\n`README.md`") == [
        "services/refunds/engine.py",
        "api/",
        "api/lease.py",
        "README.md",
    ]


def test_every_path_in_the_architecture_map_exists() -> None:
    paths = named_paths(MAP.read_text(encoding="utf-8"))
    assert len(paths) > 30, "the map names the rooms and the files of each flow"
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert missing == [], f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_the_map_fits_on_a_screen_or_two() -> None:
    assert len(MAP.read_text(encoding="utf-8").splitlines()) <= 100
