"""Engine and sessions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker

from services.core import jsonutil
from services.core.errors import InvalidRequest

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(database_url: str, *, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, **kwargs: Any) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=jsonutil.dumps,
            json_deserializer=jsonutil.loads,
            hide_parameters=True,  # a failed statement's values (buyers' data) never reach logs or messages
            connect_args={"timeout": sqlite_busy_timeout_ms / 1000, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(
        url,
        json_serializer=jsonutil.dumps,
        json_deserializer=jsonutil.loads,
        hide_parameters=True,  # a failed statement's values (buyers' data) never reach logs or messages
        pool_pre_ping=True,
        **kwargs,
    )


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL for concurrent readers, foreign keys on, and BEGIN IMMEDIATE for writers.

    pysqlite's default deferred BEGIN lets two transactions read, then deadlock on upgrade;
    taking the write lock at BEGIN serialises writers cleanly behind busy_timeout.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_IMMEDIATE = "chekar_write_transaction"


@contextmanager
def _unstorable_refused() -> Iterator[None]:
    """Text no database can take: a NUL character on PostgreSQL (psycopg refuses to send one, to
    store or to look up), a lone surrogate (from a JSON escape such as "\\ud800") on either.
    Someone typed it (a name, a note, a search, an id in a request): bad input, said in words."""
    try:
        yield
    except DataError as exc:
        if "NUL (0x00)" not in str(exc.orig):
            raise
        raise InvalidRequest("the text contains a NUL character (\\x00), which cannot be stored or searched") from None
    except UnicodeEncodeError as exc:
        if exc.reason != "surrogates not allowed":
            raise
        raise InvalidRequest("the text contains a lone surrogate, which is not Unicode text") from None


class Database:
    """The engine plus two ways in: `write()` units of work and `read()` sessions.

    On SQLite a write transaction takes the write lock at BEGIN (see `_configure_sqlite`);
    reads never do, so the dashboard never blocks payment processing.
    """

    def __init__(self, database_url: str, *, session_info: dict[str, Any] | None = None, **engine_kwargs: Any) -> None:
        """`session_info`: copied into every write session's `Session.info`, for code that has a
        session but not the runtime (e.g. whether notifications are queued)."""
        self.url = database_url
        self.engine = make_engine(database_url, **engine_kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False, info=dict(session_info or {}))
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._sqlite_write_lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error."""
        if self.is_sqlite:
            # SQLite has one writer at a time. Queue this process's writers on a lock rather than
            # on SQLite's busy handler, whose sleeps grow to 100 ms under contention.
            with _unstorable_refused(), self._sqlite_write_lock, self._writes() as session, session.begin():
                yield session
            return
        with _unstorable_refused(), self._writes() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with _unstorable_refused(), self._reads() as session:
            yield session

    def with_session_info(self, session_info: dict[str, Any]) -> Database:
        """The same database (engine, pool, writer lock) whose write sessions carry `session_info`
        instead; dispose only the original."""
        other = copy.copy(self)
        other._writes = sessionmaker(self._write_engine, expire_on_commit=False, info=dict(session_info))
        return other

    def dispose(self) -> None:
        self.engine.dispose()
