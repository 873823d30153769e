"""The reconciliation benchmark still runs (at 1,000 payments) and its engine still finds exactly
the differences it planted, faster than the naive one-GET-per-payment loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_reconcile_benchmark_runs_at_a_thousand_payments(tmp_path: Path) -> None:
    out = tmp_path / "reconcile.json"
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.reconcile", "--payments", "1000", "--naive-sample", "100", "--rounds", "1",
         "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "| (a) engine" in done.stdout and "| (c) download only" in done.stdout
    result = json.loads(out.read_text())
    assert result["found_as_planted"], result["found"]
    assert result["engine_payments_checked"] >= 1000
    assert result["downloaded"] >= 1000
    assert result["engine_speedup_vs_naive"] > 1
