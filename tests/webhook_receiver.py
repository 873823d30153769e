"""A tiny loopback HTTP server that records webhook POSTs (the sandbox's V1 and V2 deliveries).

Each record: ``path``, ``content_type``, ``raw`` (the bytes), ``headers`` (lower-cased), ``body``
(V1's form or JSON fields as a dict, else None) and ``answered`` (the status sent back).
``responses`` is a queue of status codes to answer with (200 once empty); ``delay`` slows answers.
``ignore_types``: V2 webhook types (``Transaction.Ready``, ...) answered 200 and not recorded, for
tests about other deliveries of the same payment.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


def _fields(raw: bytes, content_type: str) -> dict[str, Any] | None:
    try:
        if "json" in content_type:
            data = json.loads(raw)
            return data if isinstance(data, dict) else None
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    except ValueError:
        return None


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.responses: list[int] = []
        self.delay = 0.0
        self.ignore_types: set[str] = set()
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                content_type = self.headers.get("Content-Type", "")
                if receiver.delay:
                    time.sleep(receiver.delay)
                body = _fields(raw, content_type)
                if receiver.ignore_types and body is not None and body.get("type") in receiver.ignore_types:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver._cond:
                    status = receiver.responses.pop(0) if receiver.responses else 200
                    receiver.received.append(
                        {
                            "path": self.path,
                            "content_type": content_type,
                            "raw": raw,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "answered": status,
                        }
                    )
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhooks, got {len(self.received)}: {self.received}")
                self._cond.wait(left)
            return list(self.received)

    def bodies(self) -> list[dict[str, Any]]:
        with self._cond:
            return [r["body"] for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
