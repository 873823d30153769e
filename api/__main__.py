"""`python -m api --port N`: run the payment backend with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from api.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description="Chekar payments API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("debug", "info"),
    )


if __name__ == "__main__":
    main()
