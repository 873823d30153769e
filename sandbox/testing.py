"""Run the sandbox on a free loopback port in a background thread (for tests).

with run_sandbox_in_thread() as sb:
    httpx.post(sb.url + "/users/getToken", json={...})
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.runtime import SandboxRuntime, runtime_of


class RunningSandbox:
    """A sandbox served by uvicorn in a thread; ``url`` has no trailing slash."""

    def __init__(self, app: FastAPI, server: uvicorn.Server, thread: threading.Thread,
                 host: str, port: int) -> None:  # fmt: skip
        self.app = app
        self.server = server
        self.thread = thread
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    @property
    def runtime(self) -> SandboxRuntime:
        return runtime_of(self.app)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread (injected hangs end immediately)."""
        self.runtime.stopping.set()
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()


def run_sandbox_in_thread(
    config: SandboxConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    app: FastAPI | None = None,
    startup_timeout: float = 10.0,
) -> RunningSandbox:
    """Start a sandbox (a new app unless ``app`` is given) and wait until it accepts connections.

    ``port=0`` binds a free port; the socket is bound here and handed to
    uvicorn, so there is no race between picking the port and using it.
    """
    app = app or create_app(config)
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose
    # proto says TCP, and without it every response stalls ~40 ms (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-{bound_port}", daemon=True)
    thread.start()
    running = RunningSandbox(app, server, thread, host, bound_port)
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            running.stop()
            sock.close()
            raise RuntimeError(f"sandbox did not start on {host}:{bound_port}")
        time.sleep(0.01)
    _wait_accepting(host, bound_port, deadline)
    return running


def _wait_accepting(host: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
