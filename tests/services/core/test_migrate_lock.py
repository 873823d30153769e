"""`python -m cli migrate` run by several processes at once on a fresh database: one migrates under the
lock, the others wait (saying so) and then find the schema at head (PostgreSQL advisory lock, SQLite
file lock)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from services.core.db import make_engine
from services.core.migrate import MIGRATION_LOCK_KEY, WAITING_MESSAGE, sqlite_lock_path

ROOT = Path(__file__).resolve().parents[3]
HEAD = "0012_purge_horizons"


def _migrate(database_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PORTONE_MODE": "sandbox"}
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli", "migrate"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _versions(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if "alembic_version" not in inspect(connection).get_table_names():
                return []
            return [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


@contextmanager
def _held_elsewhere(database_url: str) -> Iterator[None]:
    """The migration lock, held by this test process as another migrating process would hold it."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = sqlite_lock_path(Path(str(url.database)))
        with path.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield
        return
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
            yield
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
    finally:
        engine.dispose()


def test_several_migrate_processes_started_together_all_succeed_once(database_url: str) -> None:
    processes = [_migrate(database_url) for _ in range(4)]
    errors = [process.communicate(timeout=180)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], "\n".join(errors)
    assert _versions(database_url) == [HEAD]


def _collect(stream: object) -> tuple[list[str], threading.Thread]:
    lines: list[str] = []

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))
        stream.close()  # type: ignore[attr-defined]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def test_migrate_waits_while_another_process_holds_the_lock_and_says_so(database_url: str) -> None:
    with _held_elsewhere(database_url):
        waiting = _migrate(database_url)
        said, reader = _collect(waiting.stderr)
        time.sleep(3)  # ample time to migrate an empty database, were it not waiting
        finished_early = waiting.poll() is not None
        said_while_waiting = list(said)
        assert _versions(database_url) == []
    waiting.wait(timeout=180)
    reader.join(timeout=10)
    if waiting.stdout is not None:
        waiting.stdout.close()
    errors = "\n".join(said)
    assert not finished_early, errors
    assert said_while_waiting == [WAITING_MESSAGE], errors  # one line, while it waits: not a silent hang
    assert waiting.returncode == 0, errors
    assert _versions(database_url) == [HEAD]


def test_migrate_with_the_lock_free_says_nothing_of_waiting(database_url: str) -> None:
    done = _migrate(database_url)
    _out, errors = done.communicate(timeout=180)
    assert done.returncode == 0, errors
    assert WAITING_MESSAGE not in errors
