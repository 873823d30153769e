"""A throwaway PostgreSQL server from the local binaries: for the test suite and the benchmarks.

``PostgresServer(bindir=find_postgres_bindir()).start()`` makes a private cluster with the local
``initdb`` in a temporary directory, listening on ``127.0.0.1`` on a free port with trust auth and
``fsync`` off (throwaway data); ``stop()`` stops it and deletes the directory. ``running_postgres()``
does both around a ``with`` block. Users: ``tests/postgres_server.py`` (pytest fixtures) and
``bench/run.py`` (the PostgreSQL cases).

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<ver>/bin``,
newest version wins), or ``$CHEKAR_PG_BINDIR``, or whatever ``pg_config``/``PATH`` point at;
``PostgresNotFoundError`` (with the install hint) when there are none.

PostgreSQL refuses to run as root. When run as root (as CI does), ``initdb`` and ``pg_ctl`` run
through ``runuser -u chekar-pg`` (a system user created on first use; ``$CHEKAR_PG_OS_USER`` picks
another) and the temporary directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

SUPERUSER = "chekar"
SESSION_DB = "chekar"
TEMPLATE_DB = "chekar_template"
DEFAULT_OS_USER = "chekar-pg"
INSTALL_HINT = "Install the server with `apt-get install postgresql` (Debian/Ubuntu), or set CHEKAR_PG_BINDIR."
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_START_ATTEMPTS = 5
_TIMEOUT_SECONDS = 120


class PostgresNotFoundError(RuntimeError):
    """No usable PostgreSQL server binaries on this machine."""


class PostgresStartError(RuntimeError):
    """The throwaway server could not be set up or started."""


# --- finding the binaries -------------------------------------------------------------------------


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: compare 9.6 < 15 < 16 numerically, not as text.
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_postgres_bindir(debian_root: str = "/usr/lib/postgresql") -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; the newest version wins."""
    override = os.environ.get("CHEKAR_PG_BINDIR")
    if override:
        bindir = Path(override)
        if _has_server_binaries(bindir):
            return bindir
        raise PostgresNotFoundError(
            f"CHEKAR_PG_BINDIR={override} does not contain {', '.join(_REQUIRED_BINARIES)}. {INSTALL_HINT}"
        )
    candidates = [Path(p) for p in glob.glob(os.path.join(debian_root, "*", "bin"))]
    candidates = sorted((p for p in candidates if _has_server_binaries(p)), key=_version_key, reverse=True)
    if candidates:
        return candidates[0]
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and _has_server_binaries(Path(result.stdout.strip())):
            return Path(result.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb and _has_server_binaries(Path(initdb).parent):
        return Path(initdb).parent
    raise PostgresNotFoundError(
        f"No PostgreSQL server binaries ({', '.join(_REQUIRED_BINARIES)}) found in {debian_root}/*/bin, "
        f"via pg_config or on PATH. The PostgreSQL tests need a local server. {INSTALL_HINT}"
    )


# --- running as root --------------------------------------------------------------------------------


def _ensure_os_user(name: str) -> None:
    """Create the unprivileged system user that owns the cluster, if it does not exist yet."""
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        return
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "Chekar test PostgreSQL", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:  # another test run may have created it at the same moment
        pwd.getpwnam(name)
    except KeyError:
        raise PostgresStartError(
            f"PostgreSQL refuses to run as root, and creating the system user {name!r} to run it failed "
            f"(useradd exit {result.returncode}): {result.stderr.strip()}"
        ) from None


def _world_traversable(path: Path) -> bool:
    """Whether another user can reach entries below ``path`` (every ancestor has o+x)."""
    for part in [path, *path.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the server ----------------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    """One private PostgreSQL cluster in a temporary directory, reachable on 127.0.0.1 with trust auth."""

    bindir: Path
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    port: int = 0
    base_dir: Path | None = None
    os_user: str | None = None  # set when running as root: the unprivileged owner of the cluster
    settings: dict[str, str] = field(default_factory=dict)  # extra postgresql.conf lines (value as written)
    _names: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def log_file(self) -> Path:
        return self._base() / "server.log"

    def _base(self) -> Path:
        if self.base_dir is None:
            raise PostgresStartError("the server is not started (or already stopped)")
        return self.base_dir

    # running the binaries, as the cluster's owner
    def _run(self, binary: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / binary), *args]
        if self.os_user:
            command = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.os_user, "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        return subprocess.run(
            command,
            cwd=self.base_dir,  # a cwd the cluster's owner can enter (root's may be /root)
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS + 30,
            check=False,
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise PostgresStartError(f"{what} failed (exit {result.returncode}) in {self.base_dir}:\n{output}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # lifecycle
    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            self.os_user = os.environ.get("CHEKAR_PG_OS_USER", DEFAULT_OS_USER)
            _ensure_os_user(self.os_user)
            tmp_root = Path(tempfile.gettempdir())
            parent = tmp_root if _world_traversable(tmp_root) else Path("/tmp")  # noqa: S108
        else:
            parent = None
        self.base_dir = Path(tempfile.mkdtemp(prefix="chekar-pg-", dir=parent))
        try:
            if self.os_user:
                owner = pwd.getpwnam(self.os_user)
                os.chown(self.base_dir, owner.pw_uid, owner.pw_gid)
            self._initdb()
            self._start_on_free_port()
            self._bootstrap()
        except BaseException:
            self.stop()
            raise
        return self

    def _initdb(self) -> None:
        result = self._run(
            "initdb", "--pgdata", str(self.data_dir), "--username", self.user, "--auth", "trust",
            "--encoding", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        self._check(result, "initdb")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.base_dir}'",
            # Throwaway data: durability off, for speed.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "timezone": "'UTC'",
            "log_min_messages": "warning",
            **self.settings,
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# chekar throwaway server\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def _start_on_free_port(self) -> None:
        for _attempt in range(_START_ATTEMPTS):
            self.port = _free_port()
            result = self._run(
                "pg_ctl", "start", "--pgdata", str(self.data_dir), "--log", str(self.log_file), "--wait",
                "--timeout", str(_TIMEOUT_SECONDS), "--options", f"-c port={self.port}",
            )  # fmt: skip
            if result.returncode == 0:
                return
            log = self._log_tail()
            if "could not bind" not in log and "in use" not in log:  # anything but a lost port race is fatal
                break
        output = (result.stdout + result.stderr).strip()
        raise PostgresStartError(
            f"pg_ctl start failed (exit {result.returncode}) in {self.base_dir}:\n{output}\n"
            f"--- server log ---\n{self._log_tail()}"
        )

    def _bootstrap(self) -> None:
        with self.admin_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SESSION_DB)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))

    def stop(self) -> None:
        if self.base_dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            result = self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait")
            if result.returncode != 0:
                self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "immediate", "--wait")
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None

    def pause(self) -> None:
        """Stop the server (fast shutdown: sessions are cut), keeping its data and port, as an
        outage would; `resume()` brings it back. For fault tests."""
        self._check(self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait"), "pause")

    def resume(self) -> None:
        """Start a `pause()`d server again on the same port."""
        result = self._run(
            "pg_ctl", "start", "--pgdata", str(self.data_dir), "--log", str(self.log_file), "--wait",
            "--timeout", str(_TIMEOUT_SECONDS), "--options", f"-c port={self.port}",
        )  # fmt: skip
        self._check(result, "resume")

    # databases
    def url(self, database: str = SESSION_DB) -> str:
        url = URL.create("postgresql+psycopg", username=self.user, host=self.host, port=self.port, database=database)
        return url.render_as_string(hide_password=False)

    def admin_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the ``postgres`` database, for CREATE/DROP DATABASE."""
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True, connect_timeout=10
        )

    def create_database(self, name: str | None = None) -> str:
        """Create a new empty database (copied from an empty template) and return its name."""
        name = name or f"test_{next(self._names)}_{uuid.uuid4().hex[:8]}"
        with self.admin_connection() as conn:
            # FILE_COPY (PostgreSQL 15+) copies files instead of WAL-logging each block; with fsync off it stays cheap
            # even once a template holds a migrated schema.
            strategy = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}" + strategy)
            conn.execute(statement.format(sql.Identifier(name), sql.Identifier(TEMPLATE_DB)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever connections a test left open to it."""
        with self.admin_connection() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def running_postgres(settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """A started throwaway server for the block; stopped and deleted after it, whatever happens."""
    server = PostgresServer(bindir=find_postgres_bindir(), settings=dict(settings or {})).start()
    try:
        yield server
    finally:
        server.stop()
