"""Debian's Chromium through Playwright, one driver for the whole test session.

Playwright's sync API refuses a second `sync_playwright()` while one is running, so every browser
test (tests/e2e, tests/multiprocess) takes its browsers from these session fixtures, registered
once in tests/conftest.py. A test that needs other launch options (host-name rules, say) launches
its own browser from `playwright_driver`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """Missing Chromium is a failure: these tests must run."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (apt-get install chromium; "
            ".ci/run does) or set CHROMIUM_PATH. The browser tests never download a browser."
        )
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    chromium = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
