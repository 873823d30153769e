"""`python -m api --port N`: run the payment backend with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from api.app import create_app
from services.config import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="Chekar payments API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    settings = get_settings()  # refuses placeholder secrets outside sandbox mode before anything listens
    uvicorn.run(
        create_app(schema_public=not settings.is_live),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("debug", "info"),
    )


if __name__ == "__main__":
    main()
