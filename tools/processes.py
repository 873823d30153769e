"""Child processes for the supervisors (tools/devserver.py for `make run`, tools/serve.py for `make serve`).

Each child runs in its own process group (stopped with everything it spawned) and gets SIGTERM
from the kernel when the supervisor dies, even by SIGKILL (PR_SET_PDEATHSIG). Its output is read
line by line by a pump thread and handed to a writer the supervisor chooses (devserver prefixes the
name, serve writes JSON) that only queues it for `Output`'s one writer thread: a standard output
that stalls or closes drops lines (counted, and said once it works again or at exit) but never stops
a pump, so a child never blocks on its own log. Readiness is a health URL answering (or, with no
port, still running); stopping is SIGTERM to every group, a grace period, then SIGKILL.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# (child name, one line of its output without the newline)
LineWriter = Callable[[str, str], None]


class Stop(Exception):
    """A signal asked us to stop."""


def raise_stop(signum: int, _frame: object) -> None:
    """Signal handler: SIGTERM / SIGINT become `Stop`, unwinding the supervisor's main loop."""
    raise Stop(signal.Signals(signum).name)


def handle_stop_signals() -> None:
    """SIGTERM and Ctrl-C stop the supervisor and its children (so does `Output` finding its reader gone)."""
    signal.signal(signal.SIGTERM, raise_stop)
    signal.signal(signal.SIGINT, raise_stop)


def ignore_stop_signals() -> None:
    """While stopping: a second SIGTERM or Ctrl-C would unwind the shutdown and orphan the children."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Output:
    """Lines to a file descriptor (standard output) through one writer thread and a bounded queue.

    `write` never blocks and never raises: while the reader stalls (the queue is full) or after it
    closed the pipe, lines are dropped and counted. The count is written as one line (`dropped_line`)
    once a write succeeds again, and whatever was lost in the end is said on standard error by `close`.
    A reader that closed the pipe (`| head`) stops the supervisor as SIGTERM would (`closed` says why);
    SIGPIPE itself stays ignored, so a socket of ours that breaks is not taken for it.
    The writer uses the raw descriptor, never `sys.stdout`, so no buffer lock is held by a blocked write.
    """

    def __init__(self, dropped_line: Callable[[int], str], *, fd: int = 1, capacity: int = 1_000) -> None:
        self._fd = fd
        self._dropped_line = dropped_line
        self._queue: queue.Queue[str | None] = queue.Queue(capacity)
        self._lock = threading.Lock()
        self._offered = 0  # lines given to write
        self._done = 0  # lines written, or dropped and already reported in a dropped_line
        self._dropped = 0  # dropped since the last dropped_line
        self._gone = False  # writing failed: nothing more is written
        self.closed = False  # the reader closed the pipe
        self._thread = threading.Thread(target=self._run, name="output", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        with self._lock:
            self._offered += 1
            if self._gone:
                self._dropped += 1
                return
            try:
                self._queue.put_nowait(line)
            except queue.Full:
                self._dropped += 1

    def _run(self) -> None:
        while (line := self._queue.get()) is not None:
            if not self._write_line(line):
                with self._lock:
                    self._dropped += 1
                continue
            with self._lock:
                self._done += 1
                dropped, self._dropped = self._dropped, 0
            if dropped and self._write_line(self._dropped_line(dropped)):
                with self._lock:
                    self._done += dropped
            elif dropped:
                with self._lock:
                    self._dropped += dropped

    def _write_line(self, line: str) -> bool:
        if self._gone:
            return False
        data = (line + "\n").encode("utf-8", errors="replace")
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except BrokenPipeError:  # the reader is gone: stop, as a pipeline's writer does
            self._gone = self.closed = True
            _thread.interrupt_main(signal.SIGTERM)
            return False
        except OSError:  # any other failure: nothing more is written, nothing stops for it
            self._gone = True
            return False
        return True

    def close(self, timeout: float, program: str) -> None:
        """Write what is queued for up to `timeout` seconds; then say on standard error how many lines
        were lost, if any. Never blocks longer, never raises."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout=timeout)
        with self._lock:
            lost = self._offered - self._done
        if lost > 0:
            reason = "closed" if self._gone else "full"
            message = f"{program}: {lost} lines of output were dropped: standard output was {reason}\n"
            write_briefly(2, message.encode(), timeout=2)


def write_briefly(fd: int, data: bytes, timeout: float) -> None:
    """Write `data` to `fd` unless it blocks for longer than `timeout` (a stalled reader) or fails."""

    def write() -> None:
        with contextlib.suppress(OSError):
            os.write(fd, data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout)


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel for SIGTERM when the forking thread (keep it the main thread) or
    its process dies, SIGKILL included; None where prctl does not exist (not Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:  # runs in the child between fork and exec: resolved beforehand, no imports
        prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sigterm)

    return preexec


@dataclass
class Child:
    name: str
    argv: list[str]
    port: int | None  # None: no server (the scheduler)
    health_path: str
    host: str = HOST
    process: subprocess.Popen[bytes] | None = None
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def probe_url(self) -> str:
        """Where readiness is asked: a wildcard listen address is reached over loopback."""
        host = HOST if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104 - compared, not bound
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{self.health_path}"

    def start(self, env: dict[str, str], write: LineWriter) -> None:
        # PR_SET_PDEATHSIG fires when the forking *thread* exits: only the main thread lives as long as we do.
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(f"{self.name}: children are started from the main thread")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            self.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop it (and anything it spawned) ourselves
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 - prepared beforehand: one prctl call, no imports
        )
        stdout = self.process.stdout
        if stdout is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
            raise RuntimeError(f"{self.name}: no output pipe")
        self._pump = threading.Thread(target=_pump_lines, args=(self.name, stdout, write), daemon=True)
        self._pump.start()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        """Started and not exited (a child never started is not running)."""
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        if self.port is None:
            return self.exit_code() is None
        try:
            with urllib.request.urlopen(self.probe_url, timeout=2) as response:  # noqa: S310
                return int(response.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (OSError, ValueError):
            return False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        if self._pump is not None:
            self._pump.join(timeout=2)
        return True


def _pump_lines(name: str, stream: IO[bytes], write: LineWriter) -> None:
    """Read everything the child writes, whatever becomes of it: a child must never block on its log."""
    for raw in iter(stream.readline, b""):
        with contextlib.suppress(Exception):
            write(name, raw.decode(errors="replace").rstrip("\r\n"))
    stream.close()


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on `host`:`port` (a wildcard address is asked over loopback)."""
    host = HOST if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def run_step(
    name: str, argv: list[str], env: dict[str, str], *, say: Callable[[str], None], program: str, echo: bool = True
) -> str:
    """Run a one-off command to completion and return its standard output; a failure stops everything
    (SystemExit naming the step). With `echo`, its lines are said as they come (a step that waits,
    e.g. for the migration lock, says so while it waits); without, only if it fails."""
    say(f"running {' '.join(argv[1:])}")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    out: list[str] = []
    err: list[str] = []

    def read(stream: IO[str] | None, into: list[str]) -> None:
        if stream is None:
            return
        for line in stream:
            into.append(line.rstrip("\n"))
            if echo:
                say(f"  {into[-1]}")
        stream.close()

    readers = [
        threading.Thread(target=read, args=pair, daemon=True) for pair in ((process.stdout, out), (process.stderr, err))
    ]
    for reader in readers:
        reader.start()
    try:
        returncode = process.wait()
    except BaseException:  # Stop: the step goes too
        process.kill()
        process.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=5)
    if returncode != 0 and not echo:
        for line in out + err:
            say(f"  {line}")
    if returncode != 0:
        raise SystemExit(f"{program}: {name} failed (exit {returncode})")
    return "\n".join(out).rstrip()


def wait_until_ready(
    children: list[Child], timeout: float, *, on_ready: Callable[[Child], None], program: str
) -> Child | None:
    """Wait for every child to answer. Returns a child that exited meanwhile, or None when all answer;
    SystemExit naming the silent ones after `timeout` seconds."""
    pending = list(children)
    deadline = time.monotonic() + timeout
    while pending:
        for child in list(pending):
            if child.exit_code() is not None:
                return child
            if child.answers():
                on_ready(child)
                pending.remove(child)
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{c.name} ({c.probe_url})" if c.port is not None else c.name for c in pending)
            raise SystemExit(f"{program}: no answer within {timeout:.0f}s from {names}")
        time.sleep(0.3)
    return None


def first_dead(children: list[Child], poll_seconds: float = 0.5) -> Child:
    """Block until one child exits; that child."""
    while True:
        dead = next((c for c in children if c.exit_code() is not None), None)
        if dead is not None:
            return dead
        time.sleep(poll_seconds)


def stop_all(children: list[Child], grace_seconds: float, say: Callable[[str], None]) -> None:
    """SIGTERM to every running child, up to `grace_seconds` for all of them together, then SIGKILL."""
    running = [c for c in children if c.running()]
    if not running:
        return
    for child in running:  # signalled before anything is said: saying must never hold up stopping
        child.signal(signal.SIGTERM)
    say("stopping " + ", ".join(c.name for c in running))
    deadline = time.monotonic() + grace_seconds
    for child in running:
        if not child.wait(deadline - time.monotonic()):
            say(f"{child.name} did not stop in {grace_seconds:.0f}s; killing it")
            child.signal(signal.SIGKILL)
            child.wait(5)
