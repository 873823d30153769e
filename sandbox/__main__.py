"""``python -m sandbox --port N [--host 127.0.0.1]``: serve the sandbox with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from sandbox.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        ws="none",
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
