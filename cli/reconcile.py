"""`python -m cli reconcile`: reconcile a window against PortOne from a shell or a scheduler.

    python -m cli reconcile --since 2026-11-01 [--until 2026-11-30] [--repair] [--json]
    python -m cli reconcile --since 2d --every 10m        # every 10 minutes, the last 2 days
    python -m cli reconcile --resume 12                    # finish an interrupted run

Dates without a zone are Korean time (Asia/Seoul); `2d`, `12h`, `90m` mean that long before now.
A progress bar goes to stderr; `--json` prints each run's summary as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from datetime import datetime, timedelta
from typing import TextIO

from services.auth.access import Actor
from services.core.errors import PaymentsError
from services.core.kst import KST
from services.core.models import Role, utcnow
from services.reconciliation.engine import EngineOptions, Progress, start_run
from services.reconciliation.runs import RunSummary
from services.runtime import Runtime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MIN_INTERVAL_SECONDS = 1.0
SLEEP_STEP_SECONDS = 0.5


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 10m, 12h, 2d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """`2026-11-01` (midnight KST), `2026-11-01T09:30[+09:00]`, or `2d` (that long before now)."""
    if _DURATION.match(text):
        return (now or utcnow()) - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (2026-11-01), a time or a duration (2d)") from None
    return moment.replace(tzinfo=KST) if moment.tzinfo is None else moment


class ProgressBar:
    """A text progress bar: redrawn in place on a terminal, one line per percent otherwise."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._last_percent = -1
        self._last_draw = 0.0
        self._open = False

    def __call__(self, progress: Progress) -> None:
        percent = int(progress.fraction * 100)
        now = time.monotonic()
        finished = progress.phase == "finished"
        if percent == self._last_percent and not (finished and self._open):
            return
        if self.tty and not finished and now - self._last_draw < 0.1:
            return
        self._last_percent, self._last_draw = percent, now
        filled = int(self.width * progress.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        expected = f"/{progress.payments_expected:,}" if progress.payments_expected else ""
        line = (
            f"reconcile run #{progress.run_id} [{bar}] {percent:3d}%  "
            f"{progress.payments_checked:,}{expected} payments  {progress.new_alerts} new alerts"
        )
        if self.tty:
            self._open = progress.phase != "finished"
            self.stream.write("\r" + line + ("" if self._open else "\n"))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a bar left half-drawn (the run failed or was interrupted)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="window start: 2026-11-01 (KST), an ISO time, or 2d / 12h before now")
    parser.add_argument("--until", help="window end (default: now)")
    parser.add_argument("--repair", action="store_true", help="re-sync what PortOne is the source of truth for")
    parser.add_argument("--json", action="store_true", help="print each run's summary as a JSON line")
    parser.add_argument("--every", type=parse_duration, help="run again every interval (10m, 1h) until Ctrl-C")
    parser.add_argument("--max-runs", type=int, default=0, help="with --every: stop after this many runs")
    parser.add_argument("--resume", type=int, metavar="RUN_ID", help="resume an interrupted run from its checkpoint")
    parser.add_argument("--max-rps", type=float, default=None, help="PortOne requests per second (0: unpaced)")
    parser.add_argument("--concurrency", type=int, default=None, help="PortOne requests in flight at once")
    parser.add_argument("--page-size", type=int, default=None, help="payments per listing page (max 1000)")
    parser.add_argument("--slice-size", type=int, default=None, help="payments per checkpointed slice")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _options(runtime: Runtime, args: argparse.Namespace) -> EngineOptions:
    defaults = EngineOptions.from_settings(runtime.settings)
    return EngineOptions(
        max_requests_per_second=defaults.max_requests_per_second if args.max_rps is None else args.max_rps,
        concurrency=args.concurrency or defaults.concurrency,
        page_size=args.page_size or defaults.page_size,
        slice_payments=args.slice_size or defaults.slice_payments,
    )


def _print_summary(summary: RunSummary, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False), flush=True)
        return
    print(
        f"run #{summary.run_id} {summary.status}: {summary.window_start:%Y-%m-%d %H:%M} .. "
        f"{summary.window_end:%Y-%m-%d %H:%M} UTC, {summary.payments_checked:,} payments checked in "
        f"{summary.duration_seconds:.1f}s; {summary.found_total} differences, {summary.new_total} new, "
        f"{summary.resolved_total} resolved"
    )
    for kind, count in sorted(summary.counts.items()):
        print(f"  {kind:24} found {count.found:6}  new {count.new:6}  resolved {count.resolved:6}  "
              f"repaired {count.repaired:6}")  # fmt: skip
    sys.stdout.flush()


def _actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", Role.ADMIN)


def _once(runtime: Runtime, args: argparse.Namespace, *, resume: int | None) -> RunSummary:
    now = utcnow()
    since = None if resume else parse_moment(args.since, now=now)
    until = parse_moment(args.until, now=now) if args.until else now
    bar = None if args.quiet else ProgressBar(sys.stderr)
    try:
        return start_run(
            runtime,
            since=since,
            until=until,
            actor=_actor(),
            repair=args.repair,
            progress=bar,
            resume_run_id=resume,
            options=_options(runtime, args),
        )
    finally:
        if bar is not None:
            bar.close()


def _sleep(seconds: float) -> None:
    """A bounded sleep in short steps, so Ctrl-C ends it at once."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, SLEEP_STEP_SECONDS))


def run_cli(runtime: Runtime, args: argparse.Namespace) -> int:
    if not args.since and not args.resume:
        print("error: --since (or --resume RUN_ID) is required", file=sys.stderr)
        return 2
    try:
        for text in (args.since, args.until):
            if text:
                parse_moment(text)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    interval = args.every.total_seconds() if args.every else None
    if interval is not None and interval < MIN_INTERVAL_SECONDS:
        print(f"error: --every must be at least {MIN_INTERVAL_SECONDS:g}s", file=sys.stderr)
        return 2
    runs = 0
    try:
        while True:
            started = time.monotonic()
            try:
                summary = _once(runtime, args, resume=args.resume if runs == 0 else None)
            except PaymentsError as exc:
                if interval is None:
                    raise
                print(f"error: {exc} (next run in {interval:g}s)", file=sys.stderr, flush=True)
            else:
                _print_summary(summary, as_json=args.json)
            runs += 1
            if interval is None or (args.max_runs and runs >= args.max_runs):
                return 0
            _sleep(interval - (time.monotonic() - started))
    except KeyboardInterrupt:
        print("\ninterrupted: the run is stored as failed; --resume RUN_ID continues it", file=sys.stderr)
        return 130
