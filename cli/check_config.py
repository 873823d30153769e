"""`python -m cli check-config`: one line per check (ok / warning / FAILED and why), never a secret.

Exit 0 when nothing failed (warnings allowed), 1 when a check failed, 2 when the settings themselves
are refused (nothing else is checked then). `make serve` runs it first, with `--at-start`: PortOne
unreachable is then a warning (the stack starts and answers webhooks through a PortOne blip).
"""

from __future__ import annotations

import sys
import tomllib

from pydantic import ValidationError
from pydantic_settings.exceptions import SettingsError

from services.core.config import Settings
from services.system.config_check import Finding, run_checks, settings_problems

LABELS = {"ok": "ok", "warning": "warning", "failed": "FAILED"}


def _line(finding: Finding) -> str:
    return f"{LABELS[finding.outcome]:<8} {finding.check}: {finding.message}"


def run(*, at_start: bool = False) -> int:
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        for problem in settings_problems(exc):
            print(_line(Finding("settings", "failed", problem)), flush=True)
        print("settings refused: nothing else was checked", flush=True)
        return 2
    except tomllib.TOMLDecodeError:
        print(_line(Finding("settings", "failed", ".streamlit/secrets.toml is not valid TOML")), flush=True)
        return 2
    print(_line(Finding("settings", "ok", "every setting is valid")), flush=True)
    findings = run_checks(settings, at_start=at_start)
    for finding in findings:
        print(_line(finding), flush=True)
    failed = sum(finding.outcome == "failed" for finding in findings)
    warned = sum(finding.outcome == "warning" for finding in findings)
    print(f"{failed} failed, {warned} warning{'s' if warned != 1 else ''}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
