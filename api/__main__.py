"""`python -m api [--host H] [--port N] [--workers N]`: run the payment backend with uvicorn.

`--workers` (default API_WORKERS, else 1) runs that many processes, each building the app from
`api.app:create_app`. LOG_FORMAT=json (set by `make serve`) writes one JSON object per log line, one
per request among them (api/request_log.py), and turns uvicorn's own access log off. SIGTERM lets
requests in flight finish for up to GRACEFUL_SHUTDOWN_SECONDS before the workers stop.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from services.core.config import get_settings, is_loopback_host, workers_refusal
from services.core.log_format import logging_config

APP = "api.app:create_app"
# A refund waits for PortOne up to PORTONE_TIMEOUT_SECONDS (10 s by default): room for that and more.
GRACEFUL_SHUTDOWN_SECONDS = 30


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="Chekar payments API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=None, help="API processes (default: API_WORKERS, else 1)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        # Refuses placeholder secrets outside sandbox mode, and sandbox mode off this machine, before anything listens.
        settings = get_settings()
    except (ValidationError, SettingsError) as exc:
        # Only the messages: pydantic's full text would echo the input values.
        from services.system.config_check import settings_problems

        sys.exit(f"python -m api: refusing to start: {'; '.join(settings_problems(exc))}")
    if settings.portone_mode == "sandbox" and not is_loopback_host(args.host):
        # Sandbox mode takes the internal token and export secret published in this repository.
        sys.exit(
            f"python -m api: refusing to start: sandbox mode listens on this machine only (--host {args.host} "
            "is reachable from elsewhere); set PORTONE_MODE=test or live with real secrets to serve other hosts"
        )
    workers = settings.api_workers if args.workers is None else args.workers
    if workers < 1:
        parser.error("--workers must be 1 or more")
    refusal = workers_refusal(settings.database_url, workers)
    if refusal:
        sys.exit(f"python -m api: refusing to start: {refusal}")
    as_json = settings.log_format == "json"
    logging: dict[str, object] = (
        {"log_config": logging_config("json", level=args.log_level), "access_log": False}
        if as_json
        else {"access_log": args.log_level in ("debug", "info")}
    )
    uvicorn.run(
        APP,
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **logging,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
