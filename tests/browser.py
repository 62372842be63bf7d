"""Headless Chromium for the viewer's tests: Debian's /usr/bin/chromium driven by Playwright,
one browser per test session, a fresh context (cookies, cache) per test.

Playwright's own browser downloads are never used (they cannot be fetched here): the browser
is the system's, started with the flags that work as root in a container.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("VIEWER_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage",
         # WebGL on the CPU (OHIF's cornerstone renders with WebGL; there is no GPU here).
         "--enable-unsafe-swiftshader"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def chromium_available() -> bool:
    return shutil.which(CHROMIUM) is not None or Path(CHROMIUM).is_file()


@pytest.fixture(scope="session")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    if not chromium_available():
        pytest.fail(f"{CHROMIUM} is not installed (Debian package chromium: ./manage.sh setup)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with async_playwright() as playwright:
        # A persistent context is the only way to name the profile folder; its browser then
        # hands out fresh, isolated contexts for the tests.
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=FLAGS, headless=True)
        browser = context.browser
        assert browser is not None
        try:
            yield browser
        finally:
            await context.close()


async def new_page(browser: Browser, width: int = 1920, height: int = 1080) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height})
    return await context.new_page()


async def screenshot(page: Page, name: str) -> Path:
    """Saved under tests/artifacts/ (ignored by git) for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


async def wait_until(page: Page, function: str, timeout: float = 15.0) -> None:
    """Poll a JavaScript function until it returns true. Playwright's wait_for_function polls
    by evaluating strings inside the page, which the viewer's Content-Security-Policy (no
    unsafe-eval) forbids; page.evaluate goes through the debugger protocol instead."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(function):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {function}")
        await asyncio.sleep(0.05)
