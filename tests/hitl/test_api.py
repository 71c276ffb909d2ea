"""The reviews API's edges, with the orchestrator's and the worker's services called in
this process (no background processes in this module): bad input, who may see and
decide a review, cancellation, and the live inbox's messages."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group

from core.channels import flush
from jobs.lifecycle import job_advance, task_claim, task_succeed
from jobs.models import Job, Review, Task
from jobs.reviews.decisions import reviews_apply_deadlines
from tests.conftest import client_for, make_user, plan

pytestmark = pytest.mark.django_db(transaction=True)


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def run_to_gate(job_id, key: str = "draft", output=None) -> Review:
    """Advance the job and finish the gated task's attempt, as orchestrator and worker do."""
    job_advance(job_id)
    task = Task.objects.get(job_id=job_id, key=key)
    if task.review == "after":
        claimed = task_claim(task_id=str(task.id), attempt=task.attempt, worker="test")
        assert task_succeed(task=claimed, output=output if output is not None else {"text": "proposed"})
    return Review.objects.get(job_id=job_id, status="pending")


AFTER_GATE = plan({"key": "draft", "agent": "draft", "review": "after"})


def test_a_gate_naming_an_unknown_user_or_group_is_refused_with_the_field(alice):
    def gate(**fields):
        return {"plan": plan({"key": "draft", "agent": "draft", "review": "after", "gate": fields})}

    response = alice.post("/jobs", gate(deadline=0, default="maybe"), format="json")
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert "plan.tasks[0].gate.deadline" in fields and "plan.tasks[0].gate.default" in fields
    # Staff may name anyone, so for them an unknown name is an error of its own
    # (a user's refusal is tests/security/test_oracles.py: it does not say who exists).
    staff = client_for(make_user("stan", staff=True))
    fields = staff.post("/jobs", gate(assignee="nobody", group="ghosts"), format="json").json()["fields"]
    assert fields["plan.tasks[0].gate.assignee"] == ["no active user 'nobody'"]
    assert fields["plan.tasks[0].gate.group"] == ["no group 'ghosts'"]
    assert alice.post(
        "/jobs", {"plan": plan({"key": "a", "agent": "echo", "review": "sometimes"})}, format="json"
    ).json()["fields"]["plan.tasks[0].review"]
    assert not Job.objects.exists()


def test_bad_decisions_are_4xx_naming_the_field_and_change_nothing(alice):
    review = run_to_gate(submit(alice, {"plan": AFTER_GATE}))
    url = f"/reviews/{review.id}/decision"
    cases = [
        ({"decision": "maybe"}, "decision"),
        ({}, "decision"),
        ({"decision": "edit"}, "output"),
        ({"decision": "respond", "answer": "x"}, "decision"),
        ({"decision": "approve", "comment": 5}, "comment"),
    ]
    for body, field in cases:
        response = alice.post(url, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["fields"], (body, response.json())
    assert alice.post(url, ["approve"], format="json").status_code == 400
    assert alice.get("/reviews?status=bogus").json()["fields"] == {"status": ['"bogus" is not a valid choice.']}
    review.refresh_from_db()
    assert review.status == "pending" and review.actions.count() == 1


def test_an_edit_of_a_tasks_input_must_be_an_object(alice):
    job_id = submit(alice, {"plan": plan({"key": "send", "agent": "echo", "review": "before"})})
    review = run_to_gate(job_id, key="send")
    response = alice.post(f"/reviews/{review.id}/decision", {"decision": "edit", "input": [1, 2]}, format="json")
    assert response.status_code == 400 and "input" in response.json()["fields"]


def test_the_assignee_and_the_groups_members_see_and_decide_a_review_and_others_do_not(alice, bob):
    reviewers = Group.objects.create(name="reviewers")
    greta = client_for(make_user("greta"))
    greta.user.groups.add(reviewers)
    ada = client_for(make_user("ada"))
    staff = client_for(make_user("sam", staff=True))
    body = {
        "plan": plan(
            {"key": "draft", "agent": "draft", "review": "after", "gate": {"assignee": "ada", "group": "reviewers"}}
        )
    }
    # Only staff may assign a gate to someone else (jobs.reviews.gate_policy).
    review = run_to_gate(submit(staff, body))

    for client in (greta, ada, staff):
        listed = client.get("/reviews?status=pending").json()["results"]
        assert [r["id"] for r in listed] == [str(review.id)], client.user.username
    assert listed[0]["assignee"] == "ada" and listed[0]["group"] == "reviewers"
    assert alice.get("/reviews").json()["results"] == []
    assert bob.get("/reviews").json()["results"] == []
    assert bob.get(f"/reviews/{review.id}").status_code == 404
    assert bob.get(f"/app/reviews/{review.id}").status_code in (302, 404)

    response = greta.post(f"/reviews/{review.id}/decision", {"decision": "approve"}, format="json")
    assert response.status_code == 200 and response.json()["decided_by"] == "greta"
    assert Task.objects.get(job_id=review.job_id).status == "succeeded"


def test_cancelling_a_job_closes_its_pending_reviews(alice):
    job_id = submit(alice, {"plan": AFTER_GATE})
    review = run_to_gate(job_id)
    assert alice.post(f"/jobs/{job_id}/cancel").status_code == 200
    review.refresh_from_db()
    assert review.status == "expired" and [a.action for a in review.actions.all()] == ["opened", "closed"]
    assert alice.get("/reviews?status=pending").json()["results"] == []
    response = alice.post(f"/reviews/{review.id}/decision", {"decision": "approve"}, format="json")
    assert response.status_code == 409


def test_a_deadline_with_the_default_reject_sends_the_output_back_to_the_agent(alice):
    from datetime import timedelta

    from django.utils import timezone

    job_id = submit(
        alice, {"plan": plan({"key": "draft", "agent": "draft", "review": "after", "gate": {"deadline": 60}})}
    )
    review = run_to_gate(job_id)
    assert review.default_outcome == "reject"
    assert reviews_apply_deadlines() == 0  # not due yet
    Review.objects.filter(pk=review.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert reviews_apply_deadlines() == 1
    review.refresh_from_db()
    assert (review.status, review.decision) == ("expired", "reject")
    task = Task.objects.get(job_id=job_id)
    # Sent back to the agent at once, in the deadline's own transaction.
    assert task.status == "queued" and task.max_attempts == 3 and task.attempt == 2


def test_review_changes_reach_the_live_inbox_of_those_who_may_decide_only(alice, bob):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import AnonymousUser

    from jobs.reviews.consumers import ReviewInboxConsumer

    def inbox_of(user) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(ReviewInboxConsumer.as_asgi(), "/ws/reviews")
        communicator.scope["user"] = user
        return communicator

    def open_gate() -> Review:
        return run_to_gate(submit(alice, {"plan": AFTER_GATE}))

    def approve(review) -> int:
        return alice.post(f"/reviews/{review.id}/decision", {"decision": "approve"}, format="json").status_code

    async def scenario():
        anonymous = inbox_of(AnonymousUser())
        connected, code = await anonymous.connect()
        assert (connected, code) == (False, 4401)

        alices, bobs = inbox_of(alice.user), inbox_of(bob.user)
        assert (await alices.connect())[0] and (await bobs.connect())[0]
        review = await database_sync_to_async(open_gate)()
        await database_sync_to_async(flush)()
        opened = await alices.receive_json_from(timeout=5)
        assert opened["type"] == "review.changed"
        assert opened["review"]["id"] == str(review.id) and opened["review"]["status"] == "pending"
        assert opened["review"]["url"] == f"/app/reviews/{review.id}"

        assert await database_sync_to_async(approve)(review) == 200
        await database_sync_to_async(flush)()
        decided = await alices.receive_json_from(timeout=5)
        assert decided["review"]["status"] == "decided" and decided["review"]["decision"] == "approve"
        assert await bobs.receive_nothing(timeout=0.5)
        await alices.disconnect()
        await bobs.disconnect()

    async_to_sync(scenario)()


def test_a_rejected_plan_from_the_planner_is_planned_again_with_the_feedback(alice, settings):
    from jobs.plans import PLANNER_TASK_KEY
    from workers.context import AgentContext

    settings.AGENTBUS_LLM_BASE_URL = "http://127.0.0.1:9/v1"  # a planner is configured (never called here)
    job_id = submit(alice, {"requirements": "Summarise the logs", "review_plan": True})

    def planner_answers(plan_body: dict) -> Task:
        job_advance(job_id)
        planner = Task.objects.get(job_id=job_id, key=PLANNER_TASK_KEY)
        claimed = task_claim(task_id=str(planner.id), attempt=planner.attempt, worker="test")
        assert task_succeed(task=claimed, output={"plan": plan_body})
        job_advance(job_id)
        return claimed

    first_plan = plan({"key": "everything", "agent": "echo"})
    planner_answers(first_plan)
    review = Review.objects.get(job_id=job_id, status="pending", kind="plan")
    assert review.proposed["tasks"][0]["key"] == "everything"
    alice.post(f"/reviews/{review.id}/decision", {"decision": "reject", "comment": "split it by day"}, format="json")

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.plan) == ("planning", None)
    job_advance(job_id)
    planner = Task.objects.get(job_id=job_id, key=PLANNER_TASK_KEY)
    assert (planner.status, planner.attempt) == ("queued", 2)
    claimed = task_claim(task_id=str(planner.id), attempt=2, worker="test")
    human = AgentContext(task=claimed, upstream={}).human
    assert human["feedback"] == "split it by day"
    assert human["rejected_output"]["tasks"][0]["key"] == "everything"

    assert task_succeed(
        task=claimed, output={"plan": plan({"key": "monday", "agent": "echo"}, {"key": "tuesday", "agent": "echo"})}
    )
    job_advance(job_id)
    second = Review.objects.get(job_id=job_id, status="pending", kind="plan")
    assert [t["key"] for t in second.proposed["tasks"]] == ["monday", "tuesday"]
    alice.post(f"/reviews/{second.id}/decision", {"decision": "approve"}, format="json")
    job_advance(job_id)
    assert set(Task.objects.filter(job_id=job_id).values_list("key", flat=True)) == {
        PLANNER_TASK_KEY,
        "monday",
        "tuesday",
    }


def test_the_admin_shows_a_review_with_its_history(alice, client):
    review = run_to_gate(submit(alice, {"plan": AFTER_GATE}))
    alice.post(
        f"/reviews/{review.id}/decision",
        {"decision": "edit", "output": {"text": "by hand"}, "comment": "tightened"},
        format="json",
    )
    client.force_login(make_user("operator", staff=True))
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="operator").update(is_superuser=True)
    listing = client.get("/admin/jobs/review/")
    assert listing.status_code == 200 and str(review.id)[:8] in listing.content.decode()
    page = client.get(f"/admin/jobs/review/{review.id}/change/").content.decode()
    assert "opened" in page and "decided" in page and "tightened" in page and "by hand" in page


def test_the_inbox_costs_the_same_queries_for_one_review_or_many(alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def inbox_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert alice.get("/reviews?status=pending").status_code == 200
        return len(captured)

    run_to_gate(submit(alice, {"plan": AFTER_GATE}))
    one = inbox_queries()
    for _ in range(5):
        run_to_gate(submit(alice, {"plan": AFTER_GATE}))
    assert len(alice.get("/reviews?status=pending").json()["results"]) == 6
    assert inbox_queries() == one
