"""In a real browser (Debian's Chromium via Playwright): the job page and the review page
show an agent's text growing while it writes it, without reloading."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.models import Job, Review, Task
from tests.conftest import job_wait, make_user, plan, wait_for
from tests.streaming.conftest import log_in

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]

WORDS = [f"word{i} " for i in range(12)]
# A function, not an expression: Playwright polls an expression with eval(), which the
# pages' Content-Security-Policy refuses.
LIVE_TEXT_HAS = """(wanted) => {
  const pre = document.querySelector('#live-output .stream[data-key="speech"] .stream-text');
  return pre !== null && (wanted.whole ? pre.textContent === wanted.text : pre.textContent.includes(wanted.text));
}"""
LIVE_TEXT = """() => document.querySelector('#live-output .stream[data-key="speech"] .stream-text').textContent"""


def submit(owner_client_user, tasks) -> str:
    from jobs.services import job_submit

    job, _ = job_submit(owner=owner_client_user, spec={"requirements": "speak", "plan": plan(*tasks)})
    return str(job.id)


def watch_text_grow(page) -> list[str]:
    """The live text, read as it grows: first some words, later more, before the end."""
    page.wait_for_function(LIVE_TEXT_HAS, arg={"text": "word2 ", "whole": False}, timeout=30_000)
    early = page.evaluate(LIVE_TEXT)
    page.wait_for_function(LIVE_TEXT_HAS, arg={"text": "word6 ", "whole": False})
    later = page.evaluate(LIVE_TEXT)
    page.wait_for_function(LIVE_TEXT_HAS, arg={"text": "".join(WORDS), "whole": True}, timeout=30_000)
    return [early, later]


def test_the_job_page_shows_the_agents_text_growing_as_it_writes_it(pipeline, web, browser_page):
    page = browser_page
    user = make_user("tess")
    log_in(page, web.http, "tess")
    job_id = submit(user, [{"key": "speech", "agent": "talker", "input": {"words": WORDS, "pause": 0.4}}])
    page.goto(f"{web.http}/app/jobs/{job_id}")
    page.evaluate("window.__sameDocument = true")

    early, later = watch_text_grow(page)
    assert len(early) < len(later) < len("".join(WORDS))  # seen growing, not arriving whole
    assert "".join(WORDS).startswith(early) and "".join(WORDS).startswith(later)
    page.wait_for_selector('#live-output .stream[data-key="speech"][data-state="attempt 1 · succeeded"]')
    page.wait_for_selector('#job-status[data-status="succeeded"]')
    assert page.evaluate("window.__sameDocument") is True
    assert job_wait(job_id).status == "succeeded"
    assert Task.objects.get(job_id=job_id, key="speech").output == {"text": "".join(WORDS)}
    assert page.errors == []


def test_the_review_page_shows_the_text_of_the_jobs_agents_growing_live(pipeline, web, browser_page):
    page = browser_page
    user = make_user("rita")
    log_in(page, web.http, "rita")
    job_id = submit(
        user,
        [
            {"key": "draft", "agent": "echo", "review": "after"},
            {"key": "speech", "agent": "talker", "depends_on": [], "input": {"words": WORDS, "pause": 0.4}},
        ],
    )
    review = wait_for(lambda: Review.objects.filter(job_id=job_id).first(), message="the draft's review")
    page.goto(f"{web.http}/app/reviews/{review.id}")
    early, later = watch_text_grow(page)
    assert len(early) < len(later) < len("".join(WORDS))
    assert Job.objects.get(pk=job_id).status != "succeeded"  # still waiting for the reviewer
    assert page.errors == []
