"""Fault-matrix fixtures: the suite's `runtime` with per-module settings.

A module sets `runtime_overrides` (a fixture returning Settings overrides, e.g. a short PortOne
timeout so a hung PortOne costs a second, not the production ten)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import SandboxControl


@pytest.fixture
def runtime_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def runtime(
    database_url: str, sandbox: SandboxControl, portone_version: str, runtime_overrides: dict[str, Any]
) -> Iterator[object]:
    from tests.factories import make_runtime

    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox.url,
        portone_api_version=portone_version,
        **runtime_overrides,
    )
    try:
        yield rt
    finally:
        rt.close()
