"""Collects the outcome of every test marked ``@pytest.mark.reliability(area=..., case=..., outcome=...)``
into test-artifacts/reliability.json, from which tools/reliability_table.py writes README's
reliability table. A partial run updates only the tests it ran; the table says when each ran."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "reliability.json"
AREAS = ("fault", "concurrency", "load", "hostile input", "access")
_collected: dict[str, dict[str, Any]] = {}


def reliability_marker(item: pytest.Item) -> dict[str, str] | None:
    marker = item.get_closest_marker("reliability")
    if marker is None:
        return None
    fields = {key: str(marker.kwargs.get(key, "")) for key in ("area", "case", "outcome")}
    if fields["area"] not in AREAS or not fields["case"] or not fields["outcome"]:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.reliability needs area in {AREAS}, a case and the promised outcome"
        )
    return fields


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reliability_marker(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    fields = reliability_marker(item)
    if fields is None:
        return report
    variant = item.callspec.id if hasattr(item, "callspec") else ""
    entry = _collected.setdefault(item.nodeid, {**fields, "variant": variant, "outcome_of_run": "passed"})
    if report.failed:
        entry["outcome_of_run"] = "failed"
    elif report.skipped and entry["outcome_of_run"] == "passed" and report.when != "teardown":
        entry["outcome_of_run"] = "skipped"
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _collected:
        return
    try:
        previous = json.loads(RESULTS.read_text())["tests"]
    except (OSError, ValueError, KeyError):
        previous = {}
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for entry in _collected.values():
        entry["ran_at"] = stamp
    previous.update(_collected)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"tests": previous}, indent=1, ensure_ascii=False, sort_keys=True))
