"""Health of what the system depends on: the database (and its schema), PortOne and the scheduled
reconciliation. The dashboard's admin page (`check`), `GET /readyz` (`readiness`) and
`python -m cli check-config` (services/system/config_check.py) all read it from here.

Never raises for a dependency that is down: it reports it, with the reason and the time taken.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from services.auth.access import Actor, Permission, require
from services.core.config import Settings, is_placeholder
from services.core.errors import GatewayError, GatewayUnauthorized, UnreadableAnswer
from services.core.migrate import alembic_config
from services.core.models import Base, utcnow
from services.portone.v1 import PortOneV1Client
from services.reconciliation.schedule import ScheduleState, schedule_state
from services.runtime import Runtime

# A health check must answer quickly even when PortOne hangs.
PORTONE_PROBE_TIMEOUT_SECONDS = 5.0
# /readyz is asked every few seconds by load balancers: PortOne's token endpoint is asked at most this often.
PORTONE_PROBE_CACHE_SECONDS = 30.0
# With no scheduled run ever finished, the schedule counts as stale once a process has waited
# RECONCILE_STALE_MINUTES since it started (schedule_state's `watching_since`).
PROCESS_STARTED = utcnow()

SchemaState = Literal["at_head", "behind", "ahead"]


@dataclass(frozen=True)
class DatabaseHealth:
    reachable: bool
    backend: str  # sqlite | postgresql
    revision: str | None  # the schema revision the database is at (None: no schema yet)
    heads: tuple[str, ...]  # the newest revision(s) this code ships
    latency_ms: float | None
    error: str | None
    known_revision: bool = True  # the revision is one this code ships (or there is none yet)
    # What the database user may not do to our tables (None: it can read and write them all).
    cannot_write: str | None = None

    @property
    def at_head(self) -> bool:
        return self.reachable and self.revision is not None and self.revision in self.heads and len(self.heads) == 1

    @property
    def schema(self) -> SchemaState | None:
        """at_head; behind (migrations to apply); ahead (a revision this code does not know: the
        database was migrated by newer code). None when the database was not reached."""
        if not self.reachable:
            return None
        if self.at_head:
            return "at_head"
        return "behind" if self.known_revision else "ahead"

    @property
    def ok(self) -> bool:
        return self.reachable and self.at_head


@dataclass(frozen=True)
class PortOneHealth:
    reachable: bool  # PortOne answered
    authorized: bool  # ... and accepted our credentials
    api_url: str
    latency_ms: float | None
    error: str | None
    api: Literal["v1", "v2"] = "v1"
    # What PortOne refused when not authorized: "key" (V1 key/secret, V2 API secret) or "store"
    # (V2: the store id, for this secret).
    refused: Literal["key", "store"] | None = None
    # Something answered, but not in the shape PortOne documents (a wrong address, a proxy's page).
    not_portone: bool = False
    # Not known yet: the first probe of this process is under way (/readyz counts it not ready).
    checking: bool = False

    @property
    def ok(self) -> bool:
        return self.reachable and self.authorized


@dataclass(frozen=True)
class Health:
    mode: str  # sandbox | test | live
    checked_at: datetime
    database: DatabaseHealth
    portone: PortOneHealth  # V1: its key is always in use
    schedule: ScheduleState | None  # None when the database could not be read
    portone_v2: PortOneHealth | None = None  # when V2 is in use

    @property
    def is_live(self) -> bool:
        return self.mode == "live"

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def checks(self) -> tuple[Check, ...]:
        """Each check with the kind of failure in a few public words (no error text: /readyz is public)."""
        db = self.database
        checks = [
            _database_check(db),
            Check("schema", db.ok, _SCHEMA_WORDS[db.schema] if db.schema else "unknown: database unreachable"),
            _portone_check("portone", self.portone),
        ]
        if self.portone_v2 is not None:
            checks.append(_portone_check("portone_v2", self.portone_v2))
        schedule = self.schedule
        if schedule is None:
            checks.append(Check("reconcile_schedule", False, "unknown: the runs could not be read"))
        else:
            checks.append(Check("reconcile_schedule", not schedule.stale, "stale" if schedule.stale else "ok"))
        return tuple(checks)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    state: str  # "ok", or the kind of failure: unreachable, refused our key, behind head, stale ...


_SCHEMA_WORDS = {"at_head": "ok", "behind": "behind head", "ahead": "ahead of this code"}


def _database_check(db: DatabaseHealth) -> Check:
    if db.cannot_write:
        return Check("database", False, "cannot write")
    if not db.reachable:
        return Check("database", False, "unreachable")
    return Check("database", True, "ok")


def _portone_check(name: str, result: PortOneHealth) -> Check:
    if result.ok:
        return Check(name, True, "ok")
    if result.checking:
        return Check(name, False, "checking")
    if not result.reachable:
        return Check(name, False, "unreachable")
    if result.not_portone:
        return Check(name, False, "answered, but not as PortOne does")
    return Check(name, False, "refused our store id" if result.refused == "store" else "refused our key")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def database_error_text(exc: BaseException, database_url: str) -> str:
    """The first line of a database error, with the URL's password taken out wherever it appears."""
    line = f"{type(exc).__name__}: {exc}".splitlines()[0]
    try:
        password = make_url(database_url).password
    except Exception:  # noqa: BLE001 - an unparsable URL has no password to hide
        password = None
    if password:
        line = line.replace(str(password), "***")
    return line


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    """This code's migrations, read once per process (about 40 ms each time: /readyz is asked often)."""
    return ScriptDirectory.from_config(alembic_config(""))


def check_database_engine(engine: Engine, database_url: str) -> DatabaseHealth:
    """Connect, `select 1`, and read the schema revision against this code's head."""
    backend = engine.dialect.name
    scripts = _scripts()
    heads = tuple(sorted(scripts.get_heads()))
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
            revision = MigrationContext.configure(connection).get_current_revision()
            cannot_write = _cannot_write(connection, engine.url.database)
    except SQLAlchemyError as exc:
        # SQLite in a folder it cannot write cannot open its journal: say that rather than "unreachable".
        cannot = _sqlite_cannot_write(engine.url.database) if backend == "sqlite" else None
        return DatabaseHealth(
            False, backend, None, heads, None, database_error_text(exc, database_url), cannot_write=cannot
        )
    latency = _ms(started)
    known = True
    if revision is not None:
        try:
            known = scripts.get_revision(revision) is not None
        except CommandError:  # "Can't locate revision": written by newer code
            known = False
    return DatabaseHealth(
        True, backend, revision, heads, latency, None, known_revision=known, cannot_write=cannot_write
    )


WRITE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

# Each privilege asked on its own: has_table_privilege(t, 'SELECT,INSERT') is true when ANY is held.
_MISSING_TABLE_PRIVILEGES = text("""
    select p.privilege, c.relname from unnest(cast(:tables as text[])) as t(name)
    join pg_class c on c.oid = to_regclass(quote_ident(t.name))
    cross join unnest(cast(:privileges as text[])) as p(privilege)
    where not has_table_privilege(c.oid, p.privilege)
    order by p.privilege, c.relname
""")
# The sequences behind our tables' serial and identity columns: an INSERT takes their next value.
_MISSING_SEQUENCE_USAGE = text("""
    select s.relname from unnest(cast(:tables as text[])) as t(name)
    join pg_depend d on d.refobjid = to_regclass(quote_ident(t.name)) and d.classid = 'pg_class'::regclass
    join pg_class s on s.oid = d.objid
    where case when s.relkind = 'S' then not has_sequence_privilege(s.oid, 'USAGE') else false end
    order by s.relname
""")


def _cannot_write(connection: Connection, sqlite_path: str | None) -> str | None:
    """What the database user may not do to our tables, in a few words naming them (None: all
    allowed). PostgreSQL: SELECT, INSERT, UPDATE, DELETE on each table and USAGE on its sequences;
    SQLite: the file and its folder (journals are written beside it) writable by this process."""
    if connection.dialect.name == "sqlite":
        return _sqlite_cannot_write(sqlite_path)
    if connection.dialect.name != "postgresql":
        return None
    tables = sorted(Base.metadata.tables)
    missing: dict[str, list[str]] = {}
    rows = connection.execute(_MISSING_TABLE_PRIVILEGES, {"tables": tables, "privileges": list(WRITE_PRIVILEGES)})
    for privilege, table in rows:
        missing.setdefault(privilege, []).append(table)
    problems = [f"no {privilege} on {_some(names)}" for privilege, names in missing.items()]
    sequences = [row[0] for row in connection.execute(_MISSING_SEQUENCE_USAGE, {"tables": tables})]
    if sequences:
        problems.append(f"no USAGE on the sequences {_some(sequences)}")
    return "; ".join(problems) or None


def _sqlite_cannot_write(sqlite_path: str | None) -> str | None:
    if not sqlite_path or sqlite_path == ":memory:" or sqlite_path.startswith("file:"):
        return None
    path = Path(sqlite_path).resolve()
    unwritable = [str(p) for p in (path, path.parent) if p.exists() and not os.access(p, os.W_OK)]
    return f"{' and '.join(unwritable)} not writable by this process" if unwritable else None


def _some(names: list[str], shown: int = 3) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def check_database(rt: Runtime) -> DatabaseHealth:
    return check_database_engine(rt.db.engine, rt.db.url)


def uses_v2(settings: Settings) -> bool:
    """V2 is in use when new payments go through it, or when a V2 API secret of one's own is set."""
    return settings.portone_api_version == "v2" or not is_placeholder(settings.portone_v2_api_secret.get_secret_value())


def probe_portone_v1(settings: Settings) -> PortOneHealth:
    """Ask PortOne V1 for a new access token with our REST API key and secret (once, no retry)."""
    url = settings.portone_api_url
    client = PortOneV1Client(
        base_url=url,
        imp_key=settings.portone_imp_key.get_secret_value(),
        imp_secret=settings.portone_imp_secret.get_secret_value(),
        timeout=PORTONE_PROBE_TIMEOUT_SECONDS,
    )
    started = time.perf_counter()
    try:
        client.verify_credentials()
    except GatewayUnauthorized as exc:
        return PortOneHealth(True, False, url, _ms(started), str(exc), "v1", "key")
    except UnreadableAnswer as exc:
        return PortOneHealth(True, False, url, _ms(started), str(exc), "v1", not_portone=True)
    except GatewayError as exc:
        return PortOneHealth(False, False, url, _ms(started), str(exc), "v1")
    except Exception as exc:  # noqa: BLE001 - a health check reports; it never takes the page down
        return PortOneHealth(False, False, url, _ms(started), f"{type(exc).__name__}: {exc}", "v1")
    finally:
        client.close()
    return PortOneHealth(True, True, url, _ms(started), None, "v1")


def probe_portone_v2(settings: Settings) -> PortOneHealth:
    """Read one page of one payment of our store from PortOne V2 with our API secret (once, no retry)."""
    # Imported here: the V2 SDK takes about a second to import (see services/runtime.py).
    from services.portone.v2 import PortOneV2Client

    url = settings.portone_v2_api_url
    started = time.perf_counter()
    try:
        client = PortOneV2Client(
            base_url=url,
            api_secret=settings.portone_v2_api_secret.get_secret_value(),
            store_id=settings.portone_v2_store_id or None,
            timeout=PORTONE_PROBE_TIMEOUT_SECONDS,
        )
        try:
            client.verify_access()
        finally:
            client.close()
    except GatewayUnauthorized as exc:
        refused: Literal["key", "store"] = "store" if exc.http_status == 403 else "key"
        return PortOneHealth(True, False, url, _ms(started), str(exc), "v2", refused)
    except UnreadableAnswer as exc:
        return PortOneHealth(True, False, url, _ms(started), str(exc), "v2", not_portone=True)
    except GatewayError as exc:
        return PortOneHealth(False, False, url, _ms(started), str(exc), "v2")
    except Exception as exc:  # noqa: BLE001 - a health check reports; it never takes the page down
        return PortOneHealth(False, False, url, _ms(started), f"{type(exc).__name__}: {exc}", "v2")
    return PortOneHealth(True, True, url, _ms(started), None, "v2")


def probe_portone(settings: Settings) -> tuple[PortOneHealth, PortOneHealth | None]:
    """V1 always (its key is required in every mode); V2 when it is in use, at the same time (the
    caller waits for the slower one, not both in turn)."""
    if not uses_v2(settings):
        return probe_portone_v1(settings), None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="portone-v2-probe") as pool:
        v2 = pool.submit(probe_portone_v2, settings)
        return probe_portone_v1(settings), v2.result()


class PortOneProbeCache:
    """The PortOne probes' last result, for `ttl` seconds (one per process: /readyz).

    One caller at a time probes (up to the probe timeout, with no lock held); callers arriving
    meanwhile never wait for it: they get the last result, or "checking" (not ready) when there is
    none yet. Waiting would hold one of the API's request threads per caller, which orders,
    webhooks and /healthz need too, for as long as PortOne is slow."""

    def __init__(self, ttl: float = PORTONE_PROBE_CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()  # held only to read and set the fields below, never across a probe
        self._result: tuple[PortOneHealth, PortOneHealth | None] | None = None
        self._at = 0.0
        self._probing = False

    def get(self, settings: Settings) -> tuple[PortOneHealth, PortOneHealth | None]:
        with self._lock:
            fresh = self._result is not None and time.monotonic() - self._at < self.ttl
            if fresh or self._probing:
                return self._result if self._result is not None else checking(settings)
            self._probing = True
        try:
            result = probe_portone(settings)
        finally:
            with self._lock:
                self._probing = False
        with self._lock:
            self._result, self._at = result, time.monotonic()
        return result


def checking(settings: Settings) -> tuple[PortOneHealth, PortOneHealth | None]:
    """PortOne's state while its first probe is under way: not known yet, so not ready."""
    v1 = PortOneHealth(False, False, settings.portone_api_url, None, None, "v1", checking=True)
    if not uses_v2(settings):
        return v1, None
    return v1, PortOneHealth(False, False, settings.portone_v2_api_url, None, None, "v2", checking=True)


def _schedule(rt: Runtime, watching_since: datetime | None) -> ScheduleState | None:
    """None when the runs cannot be read (the database went away, or has no schema yet)."""
    try:
        return schedule_state(rt, watching_since=watching_since or PROCESS_STARTED)
    except SQLAlchemyError:
        return None


def readiness(
    rt: Runtime, *, probes: PortOneProbeCache | None = None, watching_since: datetime | None = None
) -> Health:
    """What `GET /readyz` answers: every check, PortOne's from `probes` when given (cached)."""
    database = check_database(rt)
    portone, portone_v2 = probes.get(rt.settings) if probes is not None else probe_portone(rt.settings)
    return Health(
        mode=rt.settings.portone_mode,
        checked_at=datetime.now(UTC),
        database=database,
        portone=portone,
        portone_v2=portone_v2,
        schedule=_schedule(rt, watching_since) if database.reachable else None,
    )


def check(rt: Runtime, *, actor: Actor, watching_since: datetime | None = None) -> Health:
    """The same checks for the dashboard's admin page, PortOne asked afresh."""
    require(actor, Permission.VIEW)
    return readiness(rt, watching_since=watching_since)
