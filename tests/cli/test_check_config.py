"""`python -m cli check-config` as a real process: against a sandbox holding real-looking keys over
loopback and real SQLite / PostgreSQL databases, one test per failure it reports. No run prints a secret."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.testing import RunningSandbox, run_sandbox_in_thread
from sandbox.v2_config import V2Config
from services.core.migrate import upgrade
from tests.database_access import not_writable, postgres_role
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS_REVISION = "0010_notification_outbox"  # one before head

IMP_KEY = "3717290148462861"
IMP_SECRET = "rQkZ8c1Y7mVtq2LwX0eJHn5sdPa9GfUo4iBKRxTyE6uCMWbz3NvIhADlSgpj"
V2_SECRET = "u0PbLx7s9KqGz2WcRmH4tYeV8nJfA1dC6oiXkSgUwQ3yNrTaZ5MvBpEhLjD"
V2_STORE = "store-4f1b2c9e-7a3d-4e8f-9b6a-1c2d3e4f5a6b"
V2_WEBHOOK_SECRET = "whsec_cmVhbC1sb29raW5nLXdlYmhvb2stc2lnbmluZy1rZXktMTIz"
INTERNAL_TOKEN = "it-8Yk2PqZr5Wm9Lx3Tv7Nc1Hb4"
EXPORT_SECRET = "ex-Jf6Qw2Ez8Rt4Yu1Io9Pa3Sd5"
SLACK_URL = "https://hooks.example.com/services/T0001/B0001/slackcredentialpart"
SMTP_PASSWORD = "smtp-pw-Vq7Lm2Xz9Kd4"
DB_PASSWORD = "db-pw-Hs8Tn3Rw6Yb1"
SECRETS = (IMP_KEY, IMP_SECRET, V2_SECRET, V2_WEBHOOK_SECRET, INTERNAL_TOKEN, EXPORT_SECRET, SLACK_URL,
           "slackcredentialpart", SMTP_PASSWORD, DB_PASSWORD)  # fmt: skip
# Settings this test sets itself; whatever the surrounding shell has of them is left out.
OURS = ("DATABASE_URL", "PORTONE_", "NOTIFY_", "API_", "DASHBOARD_URL", "INTERNAL_API_TOKEN", "EXPORT_LINK_",
        "WEBHOOK_ALLOWED_IPS", "SANDBOX_")  # fmt: skip


@pytest.fixture(scope="module")
def portone() -> Iterator[RunningSandbox]:
    """A sandbox that accepts only the real-looking keys above (V1 and V2)."""
    app = create_app(
        SandboxConfig(imp_key=IMP_KEY, imp_secret=IMP_SECRET), V2Config(api_secret=V2_SECRET, store_id=V2_STORE)
    )
    with run_sandbox_in_thread(app=app) as running:
        yield running


@pytest.fixture
def migrated(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'check.db'}"
    upgrade(url)
    return url


def _env(database_url: str, portone: RunningSandbox, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(OURS)}
    env.update(
        DATABASE_URL=database_url,
        PORTONE_MODE="test",
        PORTONE_API_URL=portone.url,
        PORTONE_V2_API_URL=portone.url,
        PORTONE_IMP_KEY=IMP_KEY,
        PORTONE_IMP_SECRET=IMP_SECRET,
        INTERNAL_API_TOKEN=INTERNAL_TOKEN,
        EXPORT_LINK_SECRET=EXPORT_SECRET,
        API_PUBLIC_URL="https://pay-api.chekar.example",
        DASHBOARD_URL="https://ops.chekar.example",
        NOTIFY_SLACK_WEBHOOK_URL=SLACK_URL,
    )
    env.update(extra)
    return env


def _v2(**extra: str) -> dict[str, str]:
    return {
        "PORTONE_API_VERSION": "v2",
        "PORTONE_V2_API_SECRET": V2_SECRET,
        "PORTONE_V2_STORE_ID": V2_STORE,
        "PORTONE_V2_WEBHOOK_SECRET": V2_WEBHOOK_SECRET,
        **extra,
    }


def check_config(env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "cli", "check-config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    for secret in SECRETS:
        assert secret not in output, f"a secret was printed:\n{output}"
    return done.returncode, done.stdout.splitlines()


def _line(lines: list[str], check: str) -> str:
    found = [line for line in lines if line.split(maxsplit=1)[1].startswith(f"{check}:")]
    assert len(found) == 1, (check, lines)
    return found[0]


def _failed(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAILED")]


def test_all_ok_in_test_mode_with_v1_and_v2(migrated: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(migrated, portone, **_v2()))
    assert code == 0, lines
    assert all(line.startswith("ok ") for line in lines[:-1]), lines  # the last line is the tally
    assert lines[-1] == "0 failed, 0 warnings"
    backend = "sqlite" if migrated.startswith("sqlite") else "postgresql"
    assert backend in _line(lines, "database")
    assert "0012_purge_horizons" in _line(lines, "schema")
    assert "gave an access token" in _line(lines, "portone_v1")
    assert "read the store's payments" in _line(lines, "portone_v2")
    assert "Slack" in _line(lines, "notifications")


def test_invalid_settings_are_named_one_line_each_exit_2(sqlite_db: str, portone: RunningSandbox) -> None:
    env = _env(sqlite_db, portone, API_WORKERS="0", RECONCILE_CONCURRENCY="many", PORTONE_MODE="production")
    code, lines = check_config(env)
    assert code == 2
    failed = _failed(lines)
    assert len(failed) == 3, lines
    assert any("API_WORKERS" in line for line in failed) and any("RECONCILE_CONCURRENCY" in line for line in failed)
    assert any("PORTONE_MODE" in line for line in failed)
    assert "many" not in "\n".join(lines) and "production" not in "\n".join(lines)  # values never echoed


def test_unparsable_json_setting_is_named_exit_2(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(sqlite_db, portone, FEE_TABLE='{"KRW": 50000, hidden'))
    assert code == 2 and "FEE_TABLE" in _failed(lines)[0] and "hidden" not in "\n".join(lines)


def test_placeholder_secret_in_test_mode_is_refused_exit_2(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(sqlite_db, portone, PORTONE_IMP_SECRET="sandbox-imp-secret"))
    assert code == 2
    assert "PORTONE_IMP_SECRET must be set to a real value in test mode" in _failed(lines)[0]


def test_database_unreachable(portone: RunningSandbox) -> None:
    url = f"postgresql+psycopg://chekar:{DB_PASSWORD}@127.0.0.1:{free_port()}/chekar"
    code, lines = check_config(_env(url, portone))
    assert code == 1
    database = _line(lines, "database")
    assert database.startswith("FAILED") and "cannot reach the postgresql database" in database
    assert _failed(lines) == [_line(lines, "database")]  # PortOne and the rest still checked, and fine


def test_database_ahead_of_the_code(migrated: str, portone: RunningSandbox) -> None:
    engine = create_engine(migrated)
    with engine.begin() as connection:
        connection.execute(text("update alembic_version set version_num = '0099_from_the_future'"))
    engine.dispose()
    code, lines = check_config(_env(migrated, portone))
    assert code == 1
    schema = _line(lines, "schema")
    assert schema.startswith("FAILED") and "the database is newer than this code" in schema
    assert "0099_from_the_future" in schema


def test_database_behind_is_a_warning_saying_migrate(tmp_path: Path, portone: RunningSandbox) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, PREVIOUS_REVISION)
    code, lines = check_config(_env(url, portone))
    assert code == 0, lines
    schema = _line(lines, "schema")
    assert schema.startswith("warning") and "run `python -m cli migrate`" in schema


def test_portone_unreachable(sqlite_db: str, portone: RunningSandbox) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    code, lines = check_config(_env(sqlite_db, portone, PORTONE_API_URL=nowhere))
    assert code == 1
    assert _failed(lines) == [_line(lines, "portone_v1")] and "unreachable" in _line(lines, "portone_v1")


def test_a_portone_that_does_not_answer_is_given_up_on_after_5_seconds(sqlite_db: str, portone: RunningSandbox) -> None:
    with httpx.Client(base_url=portone.url, timeout=10) as control:
        control.post("/sandbox/config", json={"latency_ms": 30_000, "latency_only": "POST /users/getToken"})
        try:
            started = time.monotonic()
            code, lines = check_config(_env(sqlite_db, portone))
            took = time.monotonic() - started
        finally:
            control.post("/sandbox/config", json={"latency_ms": 0, "latency_only": None})
    assert code == 1 and "unreachable" in _line(lines, "portone_v1") and "Timeout" in _line(lines, "portone_v1")
    assert took < 20, took  # 5 s for PortOne, the rest is starting Python


def test_portone_refuses_the_key(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(sqlite_db, portone, PORTONE_IMP_SECRET="another-real-looking-secret-0042"))
    assert code == 1
    line = _line(lines, "portone_v1")
    assert line.startswith("FAILED") and "refused PORTONE_IMP_KEY / PORTONE_IMP_SECRET" in line


def test_v2_secret_refused(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(sqlite_db, portone, **_v2(PORTONE_V2_API_SECRET="another-v2-secret-9X7Q2L")))
    assert code == 1
    assert _failed(lines) == [_line(lines, "portone_v2")]
    assert "refused PORTONE_V2_API_SECRET" in _line(lines, "portone_v2")


def test_v2_store_refused(sqlite_db: str, portone: RunningSandbox) -> None:
    other_store = "store-00000000-1111-4222-8333-444444444444"
    code, lines = check_config(_env(sqlite_db, portone, **_v2(PORTONE_V2_STORE_ID=other_store)))
    assert code == 1
    assert _failed(lines) == [_line(lines, "portone_v2")]
    assert "refused PORTONE_V2_STORE_ID for this API secret" in _line(lines, "portone_v2")


def test_a_v2_secret_alone_is_checked_too(sqlite_db: str, portone: RunningSandbox) -> None:
    """PORTONE_API_VERSION stays v1, but a V2 secret is set: V1 payments may be V2 ones tomorrow."""
    code, lines = check_config(_env(sqlite_db, portone, PORTONE_V2_API_SECRET="wrong-v2-secret-5T8Y1U"))
    assert code == 1 and _failed(lines) == [_line(lines, "portone_v2")]


def test_sqlite_with_two_api_workers(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(sqlite_db, portone, API_WORKERS="2"))
    assert code == 1
    assert _failed(lines) == ["FAILED   api_workers: SQLite takes one API process: set API_WORKERS=1 or use PostgreSQL"]


def test_postgresql_with_two_api_workers_is_fine(fresh_postgres_url: str, portone: RunningSandbox) -> None:
    upgrade(fresh_postgres_url)
    code, lines = check_config(_env(fresh_postgres_url, portone, API_WORKERS="3"))
    assert code == 0, lines
    assert _line(lines, "api_workers") == "ok       api_workers: 3 API processes"


def test_half_set_email_notifications(sqlite_db: str, portone: RunningSandbox) -> None:
    env = _env(sqlite_db, portone, NOTIFY_EMAIL_TO="ops@chekar.example", NOTIFY_EMAIL_FROM="alerts@chekar.example")
    code, lines = check_config(env)
    assert code == 1
    (line,) = _failed(lines)
    assert line.startswith("FAILED   notifications: e-mail is half set") and "NOTIFY_SMTP_HOST" in line


def test_smtp_user_without_password(sqlite_db: str, portone: RunningSandbox) -> None:
    env = _env(sqlite_db, portone, NOTIFY_SMTP_HOST="smtp.chekar.example", NOTIFY_SMTP_USER="alerts",
               NOTIFY_EMAIL_TO="ops@chekar.example", NOTIFY_EMAIL_FROM="alerts@chekar.example")  # fmt: skip
    code, lines = check_config(env)
    assert code == 1 and "NOTIFY_SMTP_USER is set but NOTIFY_SMTP_PASSWORD is empty" in _failed(lines)[0]


def test_a_complete_email_channel_is_ok_and_its_password_never_shown(sqlite_db: str, portone: RunningSandbox) -> None:
    env = _env(sqlite_db, portone, NOTIFY_SMTP_HOST="smtp.chekar.example", NOTIFY_SMTP_USER="alerts",
               NOTIFY_SMTP_PASSWORD=SMTP_PASSWORD, NOTIFY_EMAIL_TO="ops@chekar.example, cto@chekar.example",
               NOTIFY_EMAIL_FROM="alerts@chekar.example")  # fmt: skip
    code, lines = check_config(env)
    assert code == 0, lines
    assert any("e-mail: smtp.chekar.example:587, STARTTLS, with login, 2 recipients" in line for line in lines)


def test_a_slack_url_that_cannot_be_sent_to_is_refused_unechoed(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config(
        _env(sqlite_db, portone, NOTIFY_SLACK_WEBHOOK_URL="http://hooks.example.com/x/slackcredentialpart")
    )
    assert code == 2 and "NOTIFY_SLACK_WEBHOOK_URL must be an https:// address" in _failed(lines)[0]


def test_webhook_sender_list_with_a_range(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(sqlite_db, portone, WEBHOOK_ALLOWED_IPS='["52.78.100.19", "52.78.48.0/24"]'))
    assert code == 1
    assert "WEBHOOK_ALLOWED_IPS entries 2 are not single IP addresses" in _line(lines, "webhook_senders")


def test_plain_http_public_urls_are_warnings_in_test_mode(sqlite_db: str, portone: RunningSandbox) -> None:
    env = _env(sqlite_db, portone, API_PUBLIC_URL="http://10.0.0.5:8000", DASHBOARD_URL="http://10.0.0.5:8501")
    code, lines = check_config(env)
    assert code == 0, lines
    warnings = [line for line in lines if line.startswith("warning  public_urls:")]
    assert len(warnings) == 2 and "API_PUBLIC_URL" in warnings[0] and "DASHBOARD_URL" in warnings[1]


# -- at start-up, PortOne's blip is a warning (the stack must start and answer webhooks) ------


def check_config_at_start(env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "cli", "check-config", "--at-start"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Traceback" not in done.stdout + done.stderr
    return done.returncode, done.stdout.splitlines()


def test_at_start_portone_unreachable_is_a_warning(sqlite_db: str, portone: RunningSandbox) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    code, lines = check_config_at_start(_env(sqlite_db, portone, PORTONE_API_URL=nowhere, **_v2(
        PORTONE_V2_API_URL=nowhere)))  # fmt: skip
    assert code == 0, lines
    for check in ("portone_v1", "portone_v2"):
        line = _line(lines, check)
        assert line.startswith("warning") and "unreachable" in line, line
    assert _failed(lines) == []


def test_at_start_portone_refusing_the_key_still_fails(sqlite_db: str, portone: RunningSandbox) -> None:
    code, lines = check_config_at_start(
        _env(sqlite_db, portone, PORTONE_IMP_SECRET="another-real-looking-secret-0042", **_v2(
            PORTONE_V2_STORE_ID="store-00000000-1111-4222-8333-444444444444"))
    )  # fmt: skip
    assert code == 1
    assert _failed(lines) == [_line(lines, "portone_v1"), _line(lines, "portone_v2")]
    assert "refused PORTONE_IMP_KEY" in _line(lines, "portone_v1")
    assert "refused PORTONE_V2_STORE_ID" in _line(lines, "portone_v2")


# -- a server that answers 200 `{}` is not PortOne -----------------------------------------------


class _EmptyJson(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_portone() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyJson)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("flag", [False, True], ids=["by-hand", "at-start"])
def test_a_server_answering_empty_json_is_not_portone(
    sqlite_db: str, portone: RunningSandbox, not_portone: str, flag: bool
) -> None:
    env = _env(sqlite_db, portone, PORTONE_API_URL=not_portone, **_v2(PORTONE_V2_API_URL=not_portone))
    code, lines = check_config_at_start(env) if flag else check_config(env)
    assert code == 1, lines
    assert _failed(lines) == [_line(lines, "portone_v1"), _line(lines, "portone_v2")]
    for check in ("portone_v1", "portone_v2"):
        assert "answered, but not as PortOne does" in _line(lines, check)


# -- a database that keeps nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:chekar?mode=memory&cache=shared&uri=true"]
)
def test_an_in_memory_sqlite_database_fails_outside_sandbox(url: str, portone: RunningSandbox) -> None:
    code, lines = check_config(_env(url, portone))
    assert code == 1, lines
    line = _line(lines, "database")
    assert line.startswith("FAILED") and "in memory" in line, line


# -- a database user that cannot write -----------------------------------------------------------

ALL_TABLES = "grant {privileges} on all tables in schema public to {{role}}"
SEQUENCES = "grant usage on all sequences in schema public to {role}"


@pytest.mark.parametrize(
    ("grants", "missing"),
    [
        ([ALL_TABLES.format(privileges="select")], "no DELETE on"),
        ([ALL_TABLES.format(privileges="select, insert, update"), SEQUENCES], "no DELETE on"),
        ([ALL_TABLES.format(privileges="select, insert, update, delete")], "no USAGE on the sequences"),
    ],
    ids=["select-only", "no-delete", "no-sequences"],
)
def test_a_postgresql_user_that_cannot_write_fails(
    fresh_postgres_url: str, portone: RunningSandbox, grants: list[str], missing: str
) -> None:
    upgrade(fresh_postgres_url)
    with postgres_role(fresh_postgres_url, *grants) as url:
        code, lines = check_config(_env(url, portone))
    assert code == 1, lines
    line = _line(lines, "database")
    assert line.startswith("FAILED") and "the database user cannot write" in line and missing in line, line
    assert "grant" in line and _failed(lines) == [line], lines


def test_a_postgresql_user_with_every_privilege_passes(fresh_postgres_url: str, portone: RunningSandbox) -> None:
    upgrade(fresh_postgres_url)
    grants = (ALL_TABLES.format(privileges="select, insert, update, delete"), SEQUENCES)
    with postgres_role(fresh_postgres_url, *grants) as url:
        code, lines = check_config(_env(url, portone))
    assert code == 0, lines
    assert _line(lines, "database").startswith("ok")


@pytest.mark.parametrize("which", ["file", "folder"])
def test_a_sqlite_file_that_cannot_be_written_fails(tmp_path: Path, portone: RunningSandbox, which: str) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "check.db"
    upgrade(f"sqlite:///{path}")
    with not_writable(path if which == "file" else folder):
        code, lines = check_config(_env(f"sqlite:///{path}", portone))
    assert code == 1, lines
    line = _line(lines, "database")
    assert line.startswith("FAILED") and "the database user cannot write" in line and str(path.parent) in line, line
