"""`python -m api --port N`: run the payment backend with uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn
from pydantic import ValidationError

from api.app import create_app
from services.core.config import get_settings, is_loopback_host


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="Chekar payments API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    try:
        # Refuses placeholder secrets outside sandbox mode, and sandbox mode off this machine, before anything listens.
        settings = get_settings()
    except ValidationError as exc:
        # Only the messages: pydantic's full text would echo the input values.
        reasons = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        sys.exit(f"python -m api: refusing to start: {reasons}")
    if settings.portone_mode == "sandbox" and not is_loopback_host(args.host):
        # Sandbox mode takes the internal token and export secret published in this repository.
        sys.exit(
            f"python -m api: refusing to start: sandbox mode listens on this machine only (--host {args.host} "
            "is reachable from elsewhere); set PORTONE_MODE=test or live with real secrets to serve other hosts"
        )
    uvicorn.run(
        create_app(schema_public=not settings.is_live),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("debug", "info"),
    )


if __name__ == "__main__":
    main()
