"""`python -m api` run by itself (a Procfile line, a systemd unit) keeps the safety `make serve` adds:
it refuses, in plain words and before anything listens, what it cannot run safely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _api(tmp_path: Path, *args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PORTONE_", "API_", "FEE_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}", **env_overrides})
    return subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-m", "api", "--port", "1", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_several_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    for done in (_api(tmp_path, "--workers", "2"), _api(tmp_path, API_WORKERS="3")):
        output = done.stdout + done.stderr
        assert done.returncode != 0 and "Traceback" not in output, output
        assert "SQLite takes one API process" in done.stderr, output


def test_a_setting_that_cannot_be_read_is_named_not_traced(tmp_path: Path) -> None:
    done = _api(tmp_path, FEE_TABLE='{"KRW": hidden-value')
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output and "hidden-value" not in output, output
    assert "FEE_TABLE" in done.stderr and "refusing to start" in done.stderr, output
