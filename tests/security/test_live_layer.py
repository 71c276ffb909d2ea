"""The live layer trusts nothing from Redis it cannot verify: an unsigned channel-layer
message never reaches a socket, a bogus seq cannot silence a job's real stream (only
the event log moves it), the inbox never turns a feed's URL into a javascript: link,
and every page carries a Content-Security-Policy under which the pages still work in
Chromium. Against a real web process and the real channel layer (Redis)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from core.live_signing import live_sign
from jobs.events import NewEvent, events_append, job_group
from jobs.models import Job
from jobs.reviews.gates import review_user_group
from tests.conftest import client_for, make_user, plan
from tests.security.conftest import session_cookie, token_header, ws_open

pytestmark = pytest.mark.django_db(transaction=True)
CHROMIUM = Path("/usr/bin/chromium")


def publish(group: str, message: dict) -> None:
    """What anyone who can write to Redis can do: publish on the channel layer (from a
    thread of its own: Playwright's sync API keeps an event loop in the test's thread)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(async_to_sync(get_channel_layer().group_send), group, message).result()


def frames(ws, wait: float = 1.0) -> list[dict]:
    out = []
    try:
        while True:
            out.append(json.loads(ws.recv(timeout=wait)))
    except TimeoutError:
        return out


def quiet_job(client) -> Job:
    response = client.post("/jobs", {"plan": plan({"key": "a", "agent": "echo"})}, format="json")
    return Job.objects.get(pk=response.json()["id"])


def forged_event(job: Job, seq: int) -> dict:
    return {"seq": seq, "type": "job.status", "job": str(job.id), "status": "succeeded", "at": "2026-01-01T00:00:00Z"}


def test_an_unsigned_message_on_the_layer_never_reaches_a_socket_nor_silences_the_stream(security_web):
    cleo = client_for(make_user("cleo"))
    job = quiet_job(cleo)
    with ws_open(security_web.base, f"/ws/jobs/{job.id}", headers={"Authorization": token_header(cleo)}) as ws:
        caught_up = frames(ws, wait=1.0)
        last = caught_up[-1]["seq"] if caught_up else 0
        publish(job_group(job.id), {"type": "job.events", "events": [forged_event(job, 10**6)]})
        assert frames(ws, wait=1.0) == []

        events_append(job.id, [NewEvent("job.status", status="running")])  # the real stream goes on
        real = frames(ws, wait=2.0)
        assert [(e["seq"], e["status"]) for e in real] == [(last + 1, "running")]


def test_even_a_validly_signed_bogus_seq_does_not_silence_the_stream(security_web):
    # Defence in depth: only the event log moves a socket's position, not the live feed.
    dora = client_for(make_user("dora"))
    job = quiet_job(dora)
    with ws_open(security_web.base, f"/ws/jobs/{job.id}", headers={"Authorization": token_header(dora)}) as ws:
        last = (frames(ws, wait=1.0) or [{"seq": 0}])[-1]["seq"]
        publish(job_group(job.id), live_sign({"type": "job.events", "events": [forged_event(job, 10**6)]}))
        assert frames(ws, wait=1.0) == []
        events_append(job.id, [NewEvent("job.status", status="running")])
        assert [e["seq"] for e in frames(ws, wait=2.0)] == [last + 1]


def a_review_message(user, url: str) -> dict:
    review = {
        "id": "5b0d8c1e-0000-4000-8000-000000000001", "kind": "after", "status": "pending",
        "job": "5b0d8c1e-0000-4000-8000-000000000002", "requirements": "r", "task": None,
        "task_key": "k", "agent": "echo", "assignee": None, "group": None, "claimed_by": None,
        "deadline": None, "question": None, "decision": None, "created_at": "2026-01-01T00:00:00Z", "url": url,
    }  # fmt: skip
    return {"type": "review.changed", "review": review}


def test_an_unsigned_review_change_is_dropped_and_a_signed_one_delivered(security_web):
    eve = make_user("eve")
    with ws_open(security_web.base, "/ws/reviews", headers={"Cookie": session_cookie(eve)}) as ws:
        publish(review_user_group(eve.id), a_review_message(eve, "javascript:alert(1)"))
        assert frames(ws, wait=1.0) == []
        publish(review_user_group(eve.id), live_sign(a_review_message(eve, "/app/reviews/x")))
        assert [f["review"]["url"] for f in frames(ws, wait=2.0)] == ["/app/reviews/x"]


PAGES = ["/app/", "/app/inbox", "/app/memory", "/app/jobs/new", "/docs", "/admin/", "/accounts/login/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_a_content_security_policy(security_web, path):
    from django.test import Client

    browser = Client()
    browser.force_login(make_user("fay", staff=True))
    response = browser.get(path, follow=True)
    policy = response.headers.get("Content-Security-Policy", "")
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert "'self'" in script_src and "unsafe-inline" not in script_src  # a nonce when a page has inline script
    assert "object-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy


@pytest.fixture
def chromium_page():
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.problems = []
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        page.on(
            "console",
            lambda msg: (
                page.problems.append(page.url + " " + msg.text) if "Content Security Policy" in msg.text else None
            ),
        )
        yield page
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def browser_log_in(page, base: str, username: str) -> None:
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_the_pages_work_in_chromium_under_the_policy(security_web, chromium_page):
    from jobs.reviews.gates import review_open

    page = chromium_page
    gus = make_user("gus", staff=True)
    job = quiet_job(client_for(gus))
    review = review_open(job_id=job.id, kind="plan", proposed=job.plan, events=[])
    browser_log_in(page, security_web.base, "gus")
    for path in ["/app/", f"/app/jobs/{job.id}", "/app/inbox", f"/app/reviews/{review.id}", "/app/memory", "/admin/"]:
        page.goto(security_web.base + path)
        page.wait_for_load_state("networkidle")
    page.goto(security_web.base + "/docs")
    try:
        page.wait_for_selector(".swagger-ui .info", timeout=15_000)  # Swagger UI rendered: its scripts ran
    finally:
        print(page.problems)
    assert page.problems == []


def test_the_inbox_never_renders_a_javascript_url_from_the_feed_as_a_link(security_web, chromium_page):
    page = chromium_page
    hal = make_user("hal")
    browser_log_in(page, security_web.base, "hal")
    page.goto(security_web.base + "/app/inbox")
    page.wait_for_function("document.getElementById('live-indicator') && true")
    page.wait_for_timeout(1000)  # the socket is open
    # Signed, as if it came from our own code: the page must still refuse the scheme.
    publish(review_user_group(hal.id), live_sign(a_review_message(hal, "javascript:alert(document.cookie)")))
    link = page.wait_for_selector("tr.review-row a.what")
    assert not link.get_attribute("href").startswith("javascript:")
