"""A throwaway PostgreSQL server for the test suite, as a pytest plugin.

Registered by ``tests/conftest.py`` (``pytest_plugins = ["tests.postgres_server"]``). Fixtures:

``postgres_server`` (session)
    The running :class:`PostgresServer`: a private cluster made with the local ``initdb`` in a
    temporary directory, listening on ``127.0.0.1`` on a free port, ``fsync`` off. Stopped and
    deleted when the session ends.
``postgres_url`` (session)
    SQLAlchemy URL of one database on it shared by the whole session:
    ``postgresql+psycopg://chekar@127.0.0.1:PORT/chekar``.
``postgres_database_factory`` (function)
    ``create() -> url``: as many new empty databases as a test wants, all dropped afterwards.
``fresh_postgres_url`` (function)
    URL of a new empty database for this test alone, dropped afterwards.

The server itself (finding the binaries, running as an unprivileged user when root, free ports)
is ``tools/throwaway_postgres.py``, shared with the benchmarks; its names are re-exported here.

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<ver>/bin``,
newest version wins), or ``$CHEKAR_PG_BINDIR``, or whatever ``pg_config``/``PATH`` point at.
When none is found the fixtures *fail* (never skip): CI must go red when the server is missing.

PostgreSQL refuses to run as root. When the tests run as root (as CI does), ``initdb`` and
``pg_ctl`` run through ``runuser -u chekar-pg`` (a system user created on first use;
``$CHEKAR_PG_OS_USER`` picks another) and the temporary directory is handed to that user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tools.throwaway_postgres import (
    DEFAULT_OS_USER,
    INSTALL_HINT,
    SESSION_DB,
    SUPERUSER,
    TEMPLATE_DB,
    PostgresNotFoundError,
    PostgresServer,
    PostgresStartError,
    find_postgres_bindir,
)

__all__ = [
    "DEFAULT_OS_USER",
    "INSTALL_HINT",
    "SESSION_DB",
    "SUPERUSER",
    "TEMPLATE_DB",
    "PostgresNotFoundError",
    "PostgresServer",
    "PostgresStartError",
    "find_postgres_bindir",
]


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole test session; fails (never skips) if there is none."""
    try:
        server = PostgresServer(bindir=find_postgres_bindir()).start()
    except (PostgresNotFoundError, PostgresStartError) as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # failed outside the except block, so the report shows the message alone
        pytest.fail(f"Cannot start the test PostgreSQL server: {problem}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a database shared by the whole session."""
    return postgres_server.url(SESSION_DB)


@pytest.fixture
def postgres_database_factory(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """``create()`` returns the URL of a new empty database; all are dropped after the test."""
    created: list[str] = []

    def create() -> str:
        created.append(postgres_server.create_database())
        return postgres_server.url(created[-1])

    yield create
    for name in created:
        postgres_server.drop_database(name)


@pytest.fixture
def fresh_postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """SQLAlchemy URL of a new empty database for this test alone, dropped afterwards."""
    return postgres_database_factory()
