"""A real web process (daphne, as the Procfile's `web`) for the review browser tests,
and a Chromium page driven by Playwright."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT, process_env, wait_for

WEB_PORT = int(os.environ.get("AGENTBUS_HITL_WEB_PORT", "8160"))
CHROMIUM = Path("/usr/bin/chromium")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def review_web(processes, tmp_path_factory):
    """The base URL of daphne serving agentbus_site.asgi for this module's tests."""
    log_path = tmp_path_factory.mktemp("review-web") / "daphne.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(WEB_PORT), "agentbus_site.asgi:application"],
            cwd=ROOT,
            env=process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{WEB_PORT}"
    try:
        wait_for(lambda: proc.poll() is not None or _answers(base + "/healthz"), timeout=30, message="daphne to answer")
        if proc.poll() is not None:
            pytest.fail("daphne exited:\n" + log_path.read_text()[-3000:])
        yield SimpleNamespace(url=base, log_path=log_path)
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
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
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
