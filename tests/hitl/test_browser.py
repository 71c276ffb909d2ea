"""Reviewers in a real browser (Debian's Chromium, Playwright) against real daphne,
orchestrator and worker processes: the inbox updates live, and approve, edit and reject
work from the review page (with the keyboard, and with JavaScript off).

The screenshots docs/inbox.png and docs/review.png are taken here.
"""

from __future__ import annotations

import json

import pytest

from jobs.models import Review, Task
from jobs.services import job_submit
from tests.conftest import ROOT, job_wait, make_user, plan, wait_for
from tests.hitl.conftest import CHROMIUM, log_in, new_page

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium (/usr/bin/chromium) is not installed"),
]

DOCS = ROOT / "docs"


def gated_job(owner, topic: str, *, requirements: str = "Write release notes for 2.0"):
    spec = {
        "requirements": requirements,
        "plan": plan(
            {"key": "research", "agent": "echo", "input": {"sources": ["changelog", "issues"]}},
            {
                "key": "draft",
                "agent": "draft",
                "input": {"topic": topic},
                "depends_on": ["research"],
                "review": "after",
            },
            {"key": "publish", "agent": "echo", "depends_on": ["draft"]},
        ),
    }
    job, _ = job_submit(owner=owner, spec=spec)
    return job


def pending_review(job) -> Review:
    return wait_for(lambda: Review.objects.filter(job=job, status="pending").first(), message="a pending review")


def test_a_reviewer_sees_a_new_review_arrive_live_opens_it_and_approves_it(pipeline, review_web, browser):
    rita = make_user("rita")
    page = new_page(browser)
    log_in(page, review_web.url, "rita")
    page.wait_for_selector("#live-indicator[data-mode=socket]")
    page.evaluate("window.__notReloaded = true")
    assert page.locator("#review-rows tr").count() == 0

    job = gated_job(rita, "release notes")
    row = page.wait_for_selector("#review-rows tr[data-review]")
    assert page.evaluate("window.__notReloaded") is True  # it came over the websocket
    assert "draft (draft): output" in row.inner_text()
    assert page.inner_text("#pending-count") == "1"
    page.screenshot(path=str(DOCS / "inbox.png"), full_page=True)

    page.click("#review-rows a.what")
    page.wait_for_selector("#decide")
    assert "Write release notes for 2.0" in page.inner_text(".requirements")
    assert '"text": "release notes"' in page.inner_text("#proposed")
    assert "changelog" in page.inner_text("body")  # the upstream output of research
    page.screenshot(path=str(DOCS / "review.png"), full_page=True)

    page.keyboard.press("a")  # the approve shortcut
    page.wait_for_selector("text=Approved.")
    assert job_wait(job.id).status == "succeeded"
    review = Review.objects.get(job=job)
    assert (review.decision, review.decided_by.username) == ("approve", "rita")
    assert "decided" in page.inner_text("#history")

    # Back in the inbox the decided review is gone, and it left without a reload too.
    page.goto(review_web.url + "/app/inbox")
    page.wait_for_selector("#live-indicator[data-mode=socket]")
    assert page.locator("#review-rows tr").count() == 0
    assert page.errors == []


def test_an_editor_changes_an_output_and_dependents_get_the_edit(pipeline, review_web, browser):
    eddie = make_user("eddie")
    job = gated_job(eddie, "a draft to fix")
    review = pending_review(job)
    page = new_page(browser)
    log_in(page, review_web.url, "eddie", then=f"/app/reviews/{review.id}")

    page.fill("#value", json.dumps({"text": "The fixed draft"}, indent=2))
    preview = page.inner_text("#edit-preview")  # a live diff before deciding
    assert '+   "text": "The fixed draft"' in preview and '-   "text": "a draft to fix",' in preview
    page.click("#edit")
    page.wait_for_selector("#diff")
    diff = page.inner_text("#diff")
    assert '+  "text": "The fixed draft"' in diff and '-  "text": "a draft to fix"' in diff
    assert job_wait(job.id).status == "succeeded"
    publish = Task.objects.get(job=job, key="publish")
    assert publish.output["upstream"]["draft"] == {"text": "The fixed draft"}
    assert page.errors == []


def test_a_reviewer_rejects_with_feedback_and_the_agent_runs_again_with_it(pipeline, review_web, browser):
    rosa = make_user("rosa")
    job = gated_job(rosa, "too short")
    first = pending_review(job)
    page = new_page(browser)
    log_in(page, review_web.url, "rosa", then=f"/app/reviews/{first.id}")

    page.keyboard.press("r")  # empty feedback: the shortcut puts the cursor in the box
    assert page.evaluate("document.activeElement.id") == "comment"
    page.keyboard.type("add the migration steps")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Rejected.")

    second = wait_for(
        lambda: Review.objects.filter(job=job, status="pending").exclude(pk=first.pk).first(),
        message="the re-run's review",
    )
    assert second.proposed["text"] == "too short (revised: add the migration steps)"
    page.goto(f"{review_web.url}/app/reviews/{second.id}")
    assert "revised: add the migration steps" in page.inner_text("#proposed")
    page.click("#approve")
    page.wait_for_selector("text=Approved.")
    assert job_wait(job.id).status == "succeeded"
    assert page.errors == []


def test_the_basic_decisions_work_with_javascript_off(pipeline, review_web, browser):
    nora = make_user("nora")
    job = gated_job(nora, "no scripts")
    review = pending_review(job)
    page = new_page(browser, javascript=False)
    log_in(page, review_web.url, "nora", then="/app/inbox")
    page.click(f"a[href='/app/reviews/{review.id}']")
    page.fill("#comment", "fine as is")
    page.click("#approve")
    page.wait_for_selector("text=Approved.")
    assert job_wait(job.id).status == "succeeded"
    assert Review.objects.get(pk=review.pk).comment == "fine as is"


def test_a_reviewer_answers_an_agents_question_from_its_options(pipeline, review_web, browser):
    quinn = make_user("quinn")
    spec = {
        "requirements": "Paint the shed",
        "plan": plan(
            {"key": "paint", "agent": "asker", "input": {"question": "Which colour?", "options": ["red", "blue"]}}
        ),
    }
    job, _ = job_submit(owner=quinn, spec=spec)
    review = pending_review(job)
    page = new_page(browser)
    log_in(page, review_web.url, "quinn", then=f"/app/reviews/{review.id}")
    assert page.inner_text("#question") == "Which colour?"
    assert page.locator("input[name=answer_option]").count() == 2
    page.check("input[name=answer_option][value=blue]")
    page.click("#respond")
    page.wait_for_selector("text=Answer sent")
    assert job_wait(job.id).status == "succeeded"
    assert Task.objects.get(job=job).output == {"answer": "blue", "attempt": 2}
    assert page.errors == []
