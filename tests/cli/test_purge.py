"""`python -m cli purge` as a real process: prints what it deleted per table; `--dry-run` only counts."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from services.core.models import WebhookEvent, utcnow
from tests.factories import SandboxControl, make_runtime

ROOT = Path(__file__).resolve().parents[2]


def test_purge_prints_counts_and_dry_run_deletes_nothing(database_url: str, sandbox: SandboxControl) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url)
    now = utcnow()
    with rt.db.write() as session:
        session.execute(
            insert(WebhookEvent),
            [
                {"received_at": at, "body": "{}", "result": "processed"}
                for at in (now - timedelta(days=200),) * 3 + (now,)
            ],
        )
    env = {
        "DATABASE_URL": database_url,
        "PORTONE_API_URL": sandbox.url,
        "PORTONE_MODE": "sandbox",
        "RETENTION_DAYS": "180",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own command line
            [sys.executable, "-m", "cli", "purge", *args], cwd=ROOT, env={**_base_env(), **env},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    try:
        dry = cli("--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "webhook_events\t3" in dry.stdout and "would delete 3 rows" in dry.stdout
        with rt.db.read() as session:
            assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 4
        done = cli()
        assert done.returncode == 0, done.stderr
        assert "webhook_events\t3" in done.stdout and "deleted 3 rows in 1 transactions" in done.stdout
        with rt.db.read() as session:
            assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
        assert "deleted 0 rows" in cli().stdout
    finally:
        rt.close()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "RETENTION", "SESSION_KEEP"))}
