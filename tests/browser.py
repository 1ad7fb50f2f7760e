"""Headless Chromium for browser tests (gallery, run report), driven by Selenium.

Uses Debian's ``chromium`` and ``chromium-driver`` (``make browser`` installs them; never a browser
download). Tests that need the browser take the ``browser`` fixture (or ``with chromium() as driver``)
and are skipped, with the reason, only when Chromium or chromedriver cannot be found or started.

    from tests.browser import browser, open_page  # noqa: F401  (browser is a fixture)

    def test_page(browser, tmp_path):
        check = open_page(browser, tmp_path / "page.html")
        assert check.loaded == check.images > 0 and not check.errors
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
# --headless=new etc. as asked; the background-networking flags stop Chromium reaching for the network
# (refused on CI machines), see DESIGN.md "Browser tests".
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def _find(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        found = name if Path(name).is_file() else shutil.which(name)
        if found:
            return found
    return None


def chromium_binary() -> str | None:
    """The Chromium executable (``/usr/bin/chromium`` first), or None."""
    return _find(CHROMIUM_CANDIDATES)


def chromedriver_binary() -> str | None:
    """The chromedriver executable (``/usr/bin/chromedriver`` first), or None."""
    return _find(CHROMEDRIVER_CANDIDATES)


def missing_reason() -> str | None:
    """Why the browser tests cannot run (None when Chromium, chromedriver and Selenium are all there)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if chromium_binary() is None:
        return "Chromium not found (run `make browser`: apt-get install chromium chromium-driver)"
    if chromedriver_binary() is None:
        return "chromedriver not found (run `make browser`: apt-get install chromium-driver)"
    return None


def chromium_available() -> bool:
    """True when Chromium, chromedriver and Selenium are installed (starting is tried by ``chromium``)."""
    return missing_reason() is None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh ``--user-data-dir`` and browser console logging; quits
    and removes the profile on exit. Calls ``pytest.skip`` when Chromium cannot be found or started."""
    reason = missing_reason()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="foveal-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()  # type: ignore[assignment]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver_binary()), options=options)
    except WebDriverException as err:
        shutil.rmtree(profile, ignore_errors=True)
        first = (err.msg or str(err)).strip().splitlines()[0] if (err.msg or str(err)).strip() else "error"
        pytest.skip(f"browser test skipped: Chromium could not start ({first})")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (see ``chromium``)."""
    with chromium() as driver:
        yield driver


@dataclass
class PageCheck:
    """What a page did in Chromium: ``images`` <img> elements, ``loaded`` of them decoded
    (``complete && naturalWidth > 0``), console ``errors`` (level SEVERE), the ``screenshot`` PNG."""

    url: str
    title: str
    images: int
    loaded: int
    errors: list[dict[str, Any]] = field(default_factory=list)
    screenshot: Path | None = None


_COUNT_IMAGES = """var images = Array.prototype.slice.call(document.images);
return [images.length, images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length];"""


def open_page(driver: Any, path: str | Path, screenshot: str | Path | None = None) -> PageCheck:
    """Load ``path`` as a file:// URL (spaces and non-ASCII percent-encoded), wait for it and its images,
    and save a screenshot (default: ``<page>.png`` beside it)."""
    from selenium.webdriver.support.ui import WebDriverWait

    path = Path(path).resolve()
    driver.get_log("browser")  # drop entries of earlier pages
    driver.get(path.as_uri())
    wait = WebDriverWait(driver, 10)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    with contextlib.suppress(Exception):  # images still decoding: give them a moment, then count
        wait.until(
            lambda d: d.execute_script(
                "return Array.prototype.every.call(document.images, function (i) { return i.complete; })"
            )
        )
    images, loaded = driver.execute_script(_COUNT_IMAGES)
    errors = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    shot = Path(screenshot) if screenshot is not None else path.with_suffix(".png")
    driver.save_screenshot(str(shot))
    return PageCheck(path.as_uri(), driver.title, int(images), int(loaded), errors, shot)
