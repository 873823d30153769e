"""The throwaway PostgreSQL server the suite runs on (``tests/postgres_server.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tests.postgres_server import PostgresNotFoundError, PostgresServer, find_postgres_bindir

pytestmark = pytest.mark.postgres


@pytest.fixture
def connect() -> Iterator[Callable[[str], Engine]]:
    """Engines for URLs, disposed after the test (no connection left open)."""
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engines.append(sa.create_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def user_tables(engine: Engine) -> list[str]:
    return sa.inspect(engine).get_table_names()


def test_server_answers_on_loopback(postgres_url: str, connect: Callable[[str], Engine]) -> None:
    url = make_url(postgres_url)
    assert (url.drivername, url.host, url.database) == ("postgresql+psycopg", "127.0.0.1", "chekar")
    with connect(postgres_url).connect() as conn:
        assert conn.execute(sa.text("select version()")).scalar_one().startswith("PostgreSQL ")
        assert conn.execute(sa.text("show fsync")).scalar_one() == "off"
        assert conn.execute(sa.text("show server_encoding")).scalar_one() == "UTF8"


def test_server_is_not_run_by_root(postgres_server: PostgresServer) -> None:
    assert postgres_server.base_dir is not None
    owner = (postgres_server.data_dir / "PG_VERSION").stat().st_uid
    assert owner != 0
    assert owner == os.geteuid() or postgres_server.os_user is not None


def test_fresh_databases_are_isolated(
    fresh_postgres_url: str, postgres_database_factory: Callable[[], str], connect: Callable[[str], Engine]
) -> None:
    other_url = postgres_database_factory()
    assert make_url(other_url).database != make_url(fresh_postgres_url).database
    first, second = connect(fresh_postgres_url), connect(other_url)
    with first.begin() as conn:
        conn.execute(sa.text("create table payment (id int primary key, memo text)"))
        conn.execute(sa.text("insert into payment values (1, '체카 탁송비')"))
    assert user_tables(first) == ["payment"]
    assert user_tables(second) == []
    with second.begin() as conn:  # same name, no clash
        conn.execute(sa.text("create table payment (id int primary key)"))
        assert conn.execute(sa.text("select count(*) from payment")).scalar_one() == 0
    with first.connect() as conn:
        assert conn.execute(sa.text("select memo from payment")).scalar_one() == "체카 탁송비"


@pytest.mark.parametrize("run", ["first", "second"])
def test_fresh_database_starts_empty(run: str, fresh_postgres_url: str, connect: Callable[[str], Engine]) -> None:
    # Both runs create the same table: the second would fail if the first's database leaked into it.
    engine = connect(fresh_postgres_url)
    assert user_tables(engine) == []
    with engine.begin() as conn:
        conn.execute(sa.text("create table leftover (run text)"))
        conn.execute(sa.text("insert into leftover values (:run)"), {"run": run})


def test_dropped_database_is_gone_even_with_open_connections(
    postgres_server: PostgresServer, connect: Callable[[str], Engine]
) -> None:
    name = postgres_server.create_database()
    conn = connect(postgres_server.url(name)).connect()  # left open on purpose: the drop must force it
    conn.execute(sa.text("select 1"))
    postgres_server.drop_database(name)
    conn.invalidate()
    conn.close()
    with connect(postgres_server.url("postgres")).connect() as admin:
        rows = admin.execute(sa.text("select 1 from pg_database where datname = :name"), {"name": name}).all()
    assert rows == []


def test_newest_server_version_is_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHEKAR_PG_BINDIR", raising=False)
    for version in ("9.6", "15", "16", "13"):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres"):
            (bindir / name).write_text("#!/bin/sh\n")
            (bindir / name).chmod(0o755)
    (tmp_path / "17" / "bin").mkdir(parents=True)  # client-only install: no server binaries
    assert find_postgres_bindir(str(tmp_path)) == tmp_path / "16" / "bin"


def test_missing_server_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHEKAR_PG_BINDIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config, no initdb
    with pytest.raises(PostgresNotFoundError, match=r"apt-get install postgresql"):
        find_postgres_bindir(str(tmp_path))


def test_bad_bindir_override_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEKAR_PG_BINDIR", str(tmp_path))
    with pytest.raises(PostgresNotFoundError, match=r"CHEKAR_PG_BINDIR=.*apt-get install postgresql"):
        find_postgres_bindir()
