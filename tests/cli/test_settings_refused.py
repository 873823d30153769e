"""Every `python -m cli` command refuses settings it cannot read in plain words: the variable named,
its value never echoed, no stack trace, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "value"),
    [("FEE_TABLE", '{"KRW": hidden-value'), ("WEBHOOK_ALLOWED_IPS", "[hidden-value"), ("API_WORKERS", "hidden-value")],
)
def test_a_setting_that_cannot_be_read_is_named_not_traced(tmp_path: Path, name: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (name, "DATABASE_URL", "PORTONE_MODE")}
    env.update({name: value, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "cli", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and "hidden-value" not in output, output
    assert name in done.stderr and "refusing to start" in done.stderr, output
    assert not (tmp_path / "x.db").exists()  # nothing was done
