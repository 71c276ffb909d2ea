"""A real web process (daphne) for the review browser tests,
and a Chromium page driven by Playwright."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

WEB_PORT = int(os.environ.get("AGENTBUS_HITL_WEB_PORT", "8160"))
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def review_web(processes):
    """The base URL of daphne serving agentbus_site.asgi for this module's tests."""
    proc, base = processes.start_web(WEB_PORT, name="review-web")
    try:
        yield SimpleNamespace(url=base, log_path=Path(proc.log_path))
    finally:
        processes.stop(proc)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests
    # make between browser steps are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def new_page(browser, *, javascript: bool = True):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=javascript)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def log_in(page, base: str, username: str, *, then: str = "/app/inbox") -> None:
    page.goto(base + then)
    assert "/accounts/login/" in page.url
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_url(base + then)
