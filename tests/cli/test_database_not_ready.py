"""A `python -m cli` command on a database it cannot use (no schema yet, or one this code is older
than) says so in plain words and what to run, with no stack trace and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from services.core.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PORTONE_"))}
    env["DATABASE_URL"] = database_url
    return subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", [("users", "list"), ("purge", "--dry-run"), ("notify",)])
def test_a_command_on_a_database_without_schema_says_to_migrate(tmp_path: Path, command: tuple[str, ...]) -> None:
    done = _cli(f"sqlite:///{tmp_path / 'empty.db'}", *command)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    assert "python -m cli migrate" in done.stderr, output


def test_a_database_behind_this_code_is_named_with_both_revisions(database_url: str) -> None:
    upgrade(database_url, "0010_notification_outbox")
    done = _cli(database_url, "users", "list")
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    assert "0010_notification_outbox" in done.stderr and "python -m cli migrate" in done.stderr, output


def test_a_migrated_database_lists_users(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ok.db'}"
    upgrade(url)
    done = _cli(url, "users", "list")
    assert done.returncode == 0, done.stdout + done.stderr
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("select count(*) from users")).scalar_one() == 0
    engine.dispose()
