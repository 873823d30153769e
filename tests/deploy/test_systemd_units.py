"""The deploy guide's systemd units: `systemd-analyze verify` accepts them (with the paths of this
checkout), and each runs exactly its Procfile line, so the two ways to run the processes never drift."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
PROCFILE = ROOT / "Procfile"
INSTALLED = "/opt/chekar"
UNIT_OF = {
    "release": "chekar-migrate",
    "api": "chekar-api",
    "dashboard": "chekar-dashboard",
    "scheduler": "chekar-scheduler",
}


def _procfile() -> dict[str, str]:
    lines = [
        line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    return {name.strip(): command.strip() for name, command in lines}


def _exec_start(unit: str) -> str:
    [line] = [line for line in (UNITS / f"{unit}.service").read_text().splitlines() if line.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=")


def test_every_procfile_process_has_a_unit_running_the_same_command() -> None:
    processes = _procfile()
    assert set(processes) == set(UNIT_OF)
    for name, command in processes.items():
        # The Procfile's ${X:-default} is the unit's literal default (systemd has no such expansion).
        expected = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command)
        unit_command = _exec_start(UNIT_OF[name]).replace(f"{INSTALLED}/.venv/bin/", "")
        assert shlex.split(unit_command) == shlex.split(expected), name


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found: install Debian's `systemd` package")
    environment = tmp_path / "chekar.env"
    environment.write_text("API_WORKERS=2\n")
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace(f"{INSTALLED}/.venv", str(ROOT / ".venv")).replace(INSTALLED, str(ROOT))
        text = text.replace("/etc/chekar/chekar.env", str(environment)).replace("User=chekar", "User=root")
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 0 and not complaints, "\n".join(complaints)
