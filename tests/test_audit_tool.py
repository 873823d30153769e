"""tools/audit.py's verdict on pip-audit's JSON report: a vulnerability fails, an audit that
checked nothing is never reported clean, --strict also fails on any package left unchecked."""

from __future__ import annotations

from tools.audit import verdict

CHECKED = {"name": "httpx", "version": "0.28.1", "vulns": []}
SKIPPED = {"name": "aiohttp", "skip_reason": "Dependency not found on PyPI and could not be audited: aiohttp (3.14.5)"}
VULNERABLE = {
    "name": "jinja2",
    "version": "2.4.1",
    "vulns": [{"id": "PYSEC-2014-8", "fix_versions": ["2.7.2"], "aliases": [], "description": "..."}],
}


def test_a_known_vulnerability_fails_whatever_else() -> None:
    status, lines = verdict({"dependencies": [CHECKED, SKIPPED, VULNERABLE], "fixes": []}, strict=False)
    assert status == 1
    assert any("VULNERABLE jinja2 2.4.1: PYSEC-2014-8 (fixed in 2.7.2)" in line for line in lines)


def test_nothing_checked_is_said_loudly_and_fails_only_when_strict() -> None:
    report = {"dependencies": [SKIPPED, {**SKIPPED, "name": "alembic"}], "fixes": []}
    status, lines = verdict(report, strict=False)
    assert status == 0 and any("CHECKED NOTHING" in line for line in lines)
    assert not any("no known vulnerabilities" in line for line in lines)
    assert verdict(report, strict=True)[0] == 1


def test_clean_when_checked_and_strict_counts_the_unchecked() -> None:
    assert verdict({"dependencies": [CHECKED], "fixes": []}, strict=True) == (
        0,
        [
            "pip-audit: 1 installed packages, 1 checked against PyPI's advisories",
            "no known vulnerabilities in the packages checked",
        ],
    )
    assert verdict({"dependencies": [CHECKED, SKIPPED], "fixes": []}, strict=False)[0] == 0
    assert verdict({"dependencies": [CHECKED, SKIPPED], "fixes": []}, strict=True)[0] == 1
