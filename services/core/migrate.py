"""Run Alembic migrations programmatically (used by `python -m cli migrate`, `make serve` and tests).

`upgrade` holds a database-wide lock while it migrates, so several processes starting at once (two
hosts running the Procfile's `release`, or a deploy beside a restart) migrate one after the other:
the first applies what is missing, the others find the schema at head and change nothing.
PostgreSQL: a session advisory lock held on the very connection Alembic migrates with.
SQLite: an exclusive lock on a file beside the database file.
A lock that is not free at once is said (`on_wait`, by default one line on standard error) before
waiting for it, so a `release` that waits does not look hung.
"""

from __future__ import annotations

import fcntl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from services.core.config import PROJECT_ROOT
from services.core.db import make_engine

# Any fixed 64-bit number, the same in every process: pg_advisory_lock's key for "migrating".
MIGRATION_LOCK_KEY = 0x43484B52_4D494752  # "CHKR" "MIGR"
WAITING_MESSAGE = "waiting for the migration lock (another process is migrating)"


def say_waiting() -> None:
    print(WAITING_MESSAGE, file=sys.stderr, flush=True)


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head", *, on_wait: Callable[[], None] = say_waiting) -> None:
    """Upgrade to `revision` under the migration lock (waits for another process's migration, calling
    `on_wait` first when the lock is not free at once)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        _upgrade_postgresql(database_url, revision, on_wait)
        return
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        command.upgrade(alembic_config(database_url), revision)  # nothing another process could share
        return
    with sqlite_migration_lock(Path(database), on_wait):
        command.upgrade(alembic_config(database_url), revision)


def sqlite_lock_path(database: Path) -> Path:
    """The lock file beside a SQLite database: `chekar.db` -> `chekar.db.migrate-lock`."""
    return database.with_name(database.name + ".migrate-lock")


@contextmanager
def sqlite_migration_lock(database: Path, on_wait: Callable[[], None] = say_waiting) -> Iterator[None]:
    """An exclusive flock on the file beside `database`; the kernel frees it when the process dies."""
    path = sqlite_lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _upgrade_postgresql(database_url: str, revision: str, on_wait: Callable[[], None]) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            with _advisory_lock(connection, on_wait):
                config = alembic_config(database_url)
                config.attributes["connection"] = connection  # migrations/env.py migrates on this connection
                command.upgrade(config, revision)
                if connection.in_transaction():
                    connection.commit()
    finally:
        engine.dispose()


@contextmanager
def _advisory_lock(connection: Connection, on_wait: Callable[[], None]) -> Iterator[None]:
    """pg_advisory_lock on `connection`: a session lock, kept across Alembic's transactions and
    released by the server if this process dies (its connection closes)."""
    free = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}).scalar()
    if not free:
        on_wait()
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()  # a failed migration leaves its transaction aborted; unlock needs a fresh one
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
