"""Dependency audit: pip-audit over the installed packages, with a verdict that says what was
actually checked (`make audit`, CI).

    python tools/audit.py             # fails on a known vulnerability; says loudly when nothing could be checked
    python tools/audit.py --strict    # also fails when any package could not be checked

pip-audit asks PyPI's JSON API about each installed version. A package PyPI does not answer for
(a private build, a mirror-only version, no network) is "skipped" and pip-audit still prints "No
known vulnerabilities found" and exits 0, so an audit that checked nothing looks like a clean one.
This wrapper counts what was audited, lists what was not, and never calls an unchecked run clean.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from typing import Any

BANNER = "=" * 78


def run_pip_audit() -> tuple[dict[str, Any] | None, str]:
    """pip-audit's JSON report (None if it produced none) and its stderr."""
    command = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "--format", "json", "--desc", "on"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our own interpreter
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return None, done.stderr
    return (report if isinstance(report, dict) else None), done.stderr


def verdict(report: dict[str, Any], *, strict: bool) -> tuple[int, list[str]]:
    """Exit status and the lines to print for a pip-audit JSON report."""
    dependencies = report.get("dependencies") or []
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    lines = [f"pip-audit: {len(dependencies)} installed packages, {audited} checked against PyPI's advisories"]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            lines.append(f"  VULNERABLE {dep['name']} {dep.get('version', '')}: {vuln.get('id')} (fixed in {fixed})")
    if skipped:
        reasons = Counter(str(d["skip_reason"]).split(":")[0] for d in skipped)
        lines.append(f"  not checked: {len(skipped)} ({'; '.join(f'{n} × {r}' for r, n in reasons.most_common())})")
        lines.extend(f"    {d['name']}: {d['skip_reason']}" for d in skipped[:200])
    if vulnerable:
        lines.append(f"FAILED: {len(vulnerable)} package(s) with known vulnerabilities")
        return 1, lines
    if dependencies and audited == 0:
        lines += [
            BANNER,
            "THE DEPENDENCY AUDIT CHECKED NOTHING: PyPI's vulnerability data answered for none of the",
            f"{len(dependencies)} packages (reachable? a mirror-only index?). This is NOT a clean result.",
            BANNER,
        ]
        return (1 if strict else 0), lines
    if skipped and strict:
        lines.append(f"FAILED (--strict): {len(skipped)} package(s) could not be checked")
        return 1, lines
    lines.append("no known vulnerabilities in the packages checked")
    return 0, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strict", action="store_true", help="fail when any package could not be checked")
    args = parser.parse_args(argv)
    report, errors = run_pip_audit()
    if report is None:
        print(BANNER)
        print("THE DEPENDENCY AUDIT DID NOT RUN: pip-audit gave no report. Its error output:")
        print(errors.strip() or "(none)")
        print(BANNER)
        return 1 if args.strict else 0
    status, lines = verdict(report, strict=args.strict)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
