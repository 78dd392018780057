"""The browser tests' fixtures: the session's broker and Valkey, and Debian's Chromium.

The broker and Valkey come from the integration fixtures (``stack``); Chromium is
Debian's (``/usr/bin/chromium``), driven headless by Playwright for Python. A
missing Chromium or Playwright fails the tests with what to install; nothing skips.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import pytest_generate_tests, stack  # noqa: F401 (fixtures)

CHROMIUM = Path(os.environ.get("STREAMSEG_TEST_CHROMIUM", "/usr/bin/chromium"))
#: Screenshots of each page, saved by every run (build/ is gitignored).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "explorer-screenshots"


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    """Headless Chromium for the module (each test opens its own context)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[dev]' (the browser "
                    "itself is Debian's Chromium; never `playwright install`)")
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set "
                    "STREAMSEG_TEST_CHROMIUM to its path)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            await browser.close()
