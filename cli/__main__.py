"""Command line for scripts: `python -m cli migrate | check-config | seed-demo | users add|list | reconcile | scheduler | notify | purge`."""

from __future__ import annotations

import argparse
import getpass
import sys

from pydantic import ValidationError
from pydantic_settings.exceptions import SettingsError

from services.core.config import DATA_DIR, get_settings
from services.core.errors import PaymentsError
from services.runtime import Runtime, build_runtime

ADMIN_PASSWORD_FILE = DATA_DIR / "admin-password.txt"


def _check_config(args: argparse.Namespace) -> int:
    from cli.check_config import run

    return run(at_start=args.at_start)


def _migrate(_: argparse.Namespace) -> int:
    from services.core.migrate import upgrade

    upgrade(get_settings().database_url)
    print("database migrated to head")
    return 0


def _with_runtime(func: object) -> object:
    def run(args: argparse.Namespace) -> int:
        from services.system.config_check import database_not_ready
        from services.system.health import check_database

        runtime = build_runtime(get_settings())
        try:
            # Code running on a schema it was not written for fails in the middle of its work, with a
            # stack trace: say so first, and what to run.
            problem = database_not_ready(check_database(runtime))
            if problem:
                print(f"error: {problem}", file=sys.stderr)
                return 1
            return int(func(runtime, args))  # type: ignore[operator]
        except PaymentsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            runtime.close()

    return run


def _seed_demo(runtime: Runtime, _: argparse.Namespace) -> int:
    from services.auth.accounts import ensure_first_admin
    from services.system.demo import seed_demo

    if runtime.settings.portone_mode != "sandbox":
        print("seed-demo only runs in sandbox mode", file=sys.stderr)
        return 2
    password = ensure_first_admin(runtime, password_file=ADMIN_PASSWORD_FILE)
    print(seed_demo(runtime))
    if password:
        print(f"dashboard login: admin / {password}  (also in {ADMIN_PASSWORD_FILE}, readable only by you)")
    elif ADMIN_PASSWORD_FILE.exists():
        print(f"dashboard login: admin / see {ADMIN_PASSWORD_FILE}")
    return 0


def _ensure_admin(runtime: Runtime, _: argparse.Namespace) -> int:
    from services.auth.accounts import ensure_first_admin

    password = ensure_first_admin(runtime, password_file=ADMIN_PASSWORD_FILE)
    if password:
        print(f"first admin created: admin / {password}  (also in {ADMIN_PASSWORD_FILE})")
    return 0


def _users_add(runtime: Runtime, args: argparse.Namespace) -> int:
    from services.auth.accounts import create_user

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    create_user(
        runtime, username=args.name, password=password, role=args.role, display_name=args.display_name, actor=None
    )
    print(f"user {args.name} created with role {args.role}")
    return 0


def _users_list(runtime: Runtime, _: argparse.Namespace) -> int:
    from services.auth.accounts import list_users

    for user in list_users(runtime, actor=None):
        state = "active" if user.active else "disabled"
        print(f"{user.username}\t{user.role}\t{state}")
    return 0


def _reconcile(runtime: Runtime, args: argparse.Namespace) -> int:
    from cli.reconcile import run_cli

    return run_cli(runtime, args)


def _scheduler(runtime: Runtime, args: argparse.Namespace) -> int:
    """Scheduled reconciliation until SIGTERM or Ctrl-C (services/reconciliation/schedule.py)."""
    import logging
    import signal
    import threading

    from services.core.log_format import configure_logging
    from services.notifications.dispatch import Dispatcher
    from services.reconciliation.schedule import serve

    configure_logging(runtime.settings.log_format)  # LOG_FORMAT=json under make serve: one JSON object a line

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _interrupt)
    dispatcher = Dispatcher(runtime).start()  # sends queued notifications (none when no channel is set)
    try:
        serve(runtime, stop=threading.Event(), max_runs=args.max_runs)
    except KeyboardInterrupt:
        logging.getLogger("chekar.scheduler").info(
            "scheduler stopped; a run it interrupted is stored as failed and the next one covers it"
        )
    finally:
        dispatcher.close()
    return 0


def _notify(runtime: Runtime, _: argparse.Namespace) -> int:
    """Send the notifications due now, once (services/notifications/dispatch.py)."""
    from services.notifications.dispatch import dispatch_due

    settings = runtime.settings
    if not (settings.notify_slack_enabled or settings.notify_email_enabled):
        print("no notification channel configured (NOTIFY_SLACK_WEBHOOK_URL or NOTIFY_SMTP_HOST/NOTIFY_EMAIL_*)")
        return 0
    result = dispatch_due(runtime)
    if result.busy:
        print("another process is sending notifications; try again later", file=sys.stderr)
        return 1
    print(f"sent {len(result.sent)}, retrying {len(result.retrying)}, given up {len(result.failed)}")
    return 1 if result.retrying or result.failed else 0


def _purge(runtime: Runtime, args: argparse.Namespace) -> int:
    """The retention purge, once (services/system/retention.py); the scheduler runs it every hour."""
    from services.system.retention import purge

    result = purge(runtime, dry_run=args.dry_run)
    if result.busy:
        print("another process is purging; try again later", file=sys.stderr)
        return 1
    verb = "would delete" if result.dry_run else "deleted"
    for table, count in result.deleted.items():
        print(f"{table}\t{count}")
    batches = "" if result.dry_run else f" in {result.batches} transactions"
    print(f"{verb} {result.total} rows{batches}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli", description="Chekar payments operations")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the database to the newest schema").set_defaults(func=_migrate)
    check_config = commands.add_parser(
        "check-config",
        help="check every setting, the database and PortOne (exit 0 ok, 1 a check failed, 2 settings refused)",
    )
    check_config.add_argument(
        "--at-start",
        action="store_true",
        help="run by the stack's start: PortOne unreachable is a warning (refusing our key or store still fails)",
    )
    check_config.set_defaults(func=_check_config)
    commands.add_parser("seed-demo", help="seed demo data once (sandbox mode only)").set_defaults(
        func=_with_runtime(_seed_demo)
    )
    commands.add_parser("ensure-admin", help="create the first admin if there is no user").set_defaults(
        func=_with_runtime(_ensure_admin)
    )
    users = commands.add_parser("users", help="dashboard accounts").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add a user; the password is read from standard input")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    add.add_argument("--display-name", default=None)
    add.set_defaults(func=_with_runtime(_users_add))
    users.add_parser("list", help="list users").set_defaults(func=_with_runtime(_users_list))
    from cli.reconcile import add_arguments as reconcile_arguments

    reconcile = commands.add_parser("reconcile", help="compare our records with PortOne over a time window")
    reconcile_arguments(reconcile)
    reconcile.set_defaults(func=_with_runtime(_reconcile))
    scheduler = commands.add_parser(
        "scheduler",
        help="reconcile the last RECONCILE_SCHEDULE_WINDOW every RECONCILE_SCHEDULE_MINUTES, with repairs, until stopped",
    )
    scheduler.add_argument("--max-runs", type=int, default=0, help="stop after this many scheduled runs (0: never)")
    scheduler.set_defaults(func=_with_runtime(_scheduler))
    commands.add_parser(
        "notify", help="send the queued notifications that are due (the scheduler does this every 15 seconds)"
    ).set_defaults(func=_with_runtime(_notify))
    purge = commands.add_parser(
        "purge", help="delete what is past RETENTION_DAYS / SESSION_KEEP_DAYS now (the scheduler does this hourly)"
    )
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    purge.set_defaults(func=_with_runtime(_purge))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValidationError, SettingsError) as exc:  # settings refused: say which, never echo a value
        from services.system.config_check import settings_problems

        print(f"python -m cli: refusing to start: {'; '.join(settings_problems(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
