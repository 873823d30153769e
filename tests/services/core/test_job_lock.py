"""The job lock's "holder process gone" check across PID namespaces."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.core import job_lock
from services.core.migrate import upgrade
from tests.factories import make_runtime

ROOT = Path(__file__).resolve().parents[3]

# Run as PID 1 of a new PID namespace (same hostname: another container on the host network, or
# replicas given one `hostname:`). Forks until the child's pid (in its namespace) is one no process
# has in the parent namespace, then that child holds the reconcile lock until stdin closes.
HOLD_IN_OTHER_NAMESPACE = """
import os, sys
while True:
    pid = os.fork()
    if pid == 0:
        if os.path.exists(f"/proc/{os.getpid()}"):  # /proc is still the parent namespace's view
            os._exit(99)
        from services.core import job_lock
        from services.core.config import Settings
        from services.runtime import build_runtime
        rt = build_runtime(Settings(database_url=sys.argv[1], portone_mode="sandbox", portone_api_url="http://127.0.0.1:9"))
        with job_lock.held(rt, job_lock.RECONCILE):
            print("held", flush=True)
            sys.stdin.read()
        rt.close()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 99:
        sys.exit(code)
"""


def test_a_live_holder_in_another_pid_namespace_with_the_same_hostname_keeps_the_lock(database_url: str) -> None:
    """A process of another container with our hostname holds the reconcile lock, alive and renewing.
    Its pid does not exist in our PID namespace, so job_lock._gone judges it dead and takes the lock
    from it: two reconciliation runs (or two of one operator's maker-checker decisions) at once."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--pid", "--fork", "true"], check=False).returncode != 0:  # noqa: S603
        pytest.skip("needs unshare --pid (root)")
    upgrade(database_url)
    rt = make_runtime(database_url=database_url, portone_api_url="http://127.0.0.1:9")
    holder = subprocess.Popen(  # noqa: S603 - our own interpreter
        [unshare, "--pid", "--fork", sys.executable, "-c", HOLD_IN_OTHER_NAMESPACE, database_url],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        owner, _ = job_lock.holder_of(rt, job_lock.RECONCILE)
        assert owner is not None  # held, lease fresh
        taken = job_lock.try_acquire(rt, job_lock.RECONCILE)
        assert taken is None, f"took the lock from the live holder {owner} (now {taken})"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
        rt.close()
