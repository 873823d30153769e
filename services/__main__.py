"""Command line for scripts: `python -m services migrate | seed-demo`."""

from __future__ import annotations

import argparse
import sys

from services.config import get_settings


def _migrate(_: argparse.Namespace) -> int:
    from services.migrate import upgrade

    upgrade(get_settings().database_url)
    print("database migrated to head")
    return 0


def _seed_demo(_: argparse.Namespace) -> int:
    from services.demo import seed_demo
    from services.runtime import build_runtime

    settings = get_settings()
    if settings.portone_mode != "sandbox":
        print("seed-demo only runs in sandbox mode", file=sys.stderr)
        return 2
    runtime = build_runtime(settings)
    try:
        print(seed_demo(runtime))
    finally:
        runtime.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services", description="Chekar payments operations")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the database to the newest schema").set_defaults(func=_migrate)
    commands.add_parser("seed-demo", help="seed demo data once (sandbox mode only)").set_defaults(func=_seed_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
