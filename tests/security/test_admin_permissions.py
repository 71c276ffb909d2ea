"""Staff is not all or nothing: admin actions need the model's change permission; a
review claim expires, and the job's owner (or staff) can release someone else's claim."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from jobs.models import Job, Review, Task
from jobs.reviews.gates import review_open
from tests.conftest import client_for, make_user, plan

pytestmark = pytest.mark.django_db

ACTIONS = {
    "/admin/jobs/job/": ["cancel_jobs", "retry_failed_tasks", "requeue_jobs"],
    "/admin/jobs/task/": ["requeue_task_jobs"],
    "/admin/jobs/review/": ["approve_reviews", "reject_reviews"],
}


def staff_browser(*codenames: str) -> Client:
    user = make_user(f"op-{'-'.join(codenames) or 'view'}", staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.mark.parametrize("path", list(ACTIONS))
def test_a_view_only_operator_is_offered_no_actions_and_cannot_post_one(path):
    model = path.strip("/").split("/")[-1]
    browser = staff_browser(f"view_{model}")
    job = Job.objects.create(owner=make_user("someone"), plan={"tasks": []}, status="running")
    Task.objects.create(job=job, key="t", agent="echo", queue="default")
    review_open(job_id=job.id, kind="plan", proposed={"tasks": []}, events=[])
    page = browser.get(path)
    assert page.status_code == 200
    assert all(action not in page.content.decode() for action in ACTIONS[path])
    if model == "job":
        answer = browser.post(path, {"action": "cancel_jobs", "_selected_action": [str(job.id)]})
        assert answer.status_code in (200, 302)
        assert Job.objects.get(pk=job.id).status == "running"  # not cancelled


def test_an_operator_with_the_change_permission_gets_the_actions():
    Job.objects.create(owner=make_user("someone"), plan={"tasks": []}, status="running")
    page = staff_browser("view_job", "change_job").get("/admin/jobs/job/")
    assert all(action in page.content.decode() for action in ACTIONS["/admin/jobs/job/"])


@pytest.fixture
def a_claimed_review(alice):
    editors = Group.objects.create(name="editors")
    alice.user.groups.add(editors)
    job = Job.objects.get(
        pk=alice.post("/jobs", {"plan": plan({"key": "a", "agent": "echo"})}, format="json").json()["id"]
    )
    review = review_open(job_id=job.id, kind="plan", proposed=job.plan, options={"group": "editors"}, events=[])
    kim = client_for(make_user("kim"))
    kim.user.groups.add(editors)
    assert kim.post(f"/reviews/{review.id}/claim").status_code == 200
    return review, kim


def test_the_jobs_owner_can_release_a_claim_someone_else_holds(alice, a_claimed_review):
    review, _ = a_claimed_review
    response = alice.post(f"/reviews/{review.id}/release")
    assert response.status_code == 200, response.json()
    assert Review.objects.get(pk=review.id).claimed_by is None


def test_a_claim_expires_and_can_then_be_taken_over(alice, settings, a_claimed_review):
    settings.AGENTBUS_REVIEW_CLAIM_TTL = 60
    review, _ = a_claimed_review
    lee = client_for(make_user("lee"))
    lee.user.groups.add(Group.objects.get(name="editors"))
    assert lee.post(f"/reviews/{review.id}/claim").status_code == 409  # still held
    Review.objects.filter(pk=review.id).update(claimed_at=timezone.now() - timedelta(seconds=61))
    assert lee.post(f"/reviews/{review.id}/claim").json()["claimed_by"] == "lee"
