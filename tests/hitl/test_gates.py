"""Review gates end to end: REST in, real orchestrator and worker processes, humans
deciding over the API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from jobs.models import Job, JobEvent, Review, ReviewAction, Task
from tests.conftest import client_for, job_wait, make_user, plan, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def pending_review(job_id, *, key=None, kind=None, timeout: float = 40) -> Review:
    def find():
        reviews = Review.objects.filter(job_id=job_id, status="pending")
        if key:
            reviews = reviews.filter(task__key=key)
        if kind:
            reviews = reviews.filter(kind=kind)
        return reviews.first()

    return wait_for(find, timeout=timeout, message=f"a pending {kind or ''} review of {key or 'the job'}")


def decide(client, review: Review, body: dict, expect: int = 200) -> dict:
    response = client.post(f"/reviews/{review.id}/decision", body, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def events_of(job_id, type_: str) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job_id=job_id, type=type_).order_by("seq"))


DRAFT_THEN_PUBLISH = plan(
    {"key": "draft", "agent": "draft", "input": {"topic": "release notes"}, "review": "after"},
    {"key": "publish", "agent": "echo", "depends_on": ["draft"]},
)


def test_an_approved_output_is_what_dependents_see_and_the_job_finishes(pipeline, alice):
    job_id = submit(alice, {"requirements": "notes", "plan": DRAFT_THEN_PUBLISH})
    review = pending_review(job_id, key="draft")
    task = Task.objects.get(job_id=job_id, key="draft")
    assert task.status == "awaiting_review"
    assert Task.objects.get(job_id=job_id, key="publish").status == "pending"

    listed = alice.get("/reviews?status=pending").json()["results"]
    assert [r["id"] for r in listed if r["job"] == job_id] == [str(review.id)]
    assert listed[0]["proposed"]["text"] == "release notes"

    body = decide(alice, review, {"decision": "approve", "comment": "looks right"})
    assert (body["status"], body["decision"], body["decided_by"]) == ("decided", "approve", "alice")
    assert job_wait(job_id).status == "succeeded"
    publish = Task.objects.get(job_id=job_id, key="publish")
    assert publish.output["upstream"]["draft"]["text"] == "release notes"

    (decided,) = events_of(job_id, "review.decided")
    assert decided.data["by"] == "alice" and decided.data["decision"] == "approve"
    assert decided.data["comment"] == "looks right"
    assert [a.action for a in ReviewAction.objects.filter(review=review)] == ["opened", "decided"]


def test_an_edited_output_replaces_the_agents_in_results_and_for_dependents(pipeline, alice):
    job_id = submit(alice, {"plan": DRAFT_THEN_PUBLISH})
    review = pending_review(job_id, key="draft")
    body = decide(alice, review, {"decision": "edit", "output": {"text": "Hand-written notes"}})
    assert '+  "text": "Hand-written notes"' in body["diff"]
    assert job_wait(job_id).status == "succeeded"

    results = alice.get(f"/jobs/{job_id}/results").json()
    assert results["tasks"]["draft"]["output"] == {"text": "Hand-written notes"}
    assert results["tasks"]["publish"]["output"]["upstream"]["draft"] == {"text": "Hand-written notes"}
    (decided,) = events_of(job_id, "review.decided")
    assert decided.data["changed"]["before"]["text"] == "release notes"
    assert decided.data["changed"]["after"] == {"text": "Hand-written notes"}
    history = alice.get(f"/reviews/{review.id}").json()["history"]
    assert history[-1]["action"] == "decided" and history[-1]["after"] == {"text": "Hand-written notes"}


def test_a_rejected_output_runs_the_agent_again_with_the_feedback(pipeline, alice):
    job_id = submit(alice, {"plan": DRAFT_THEN_PUBLISH})
    first = pending_review(job_id, key="draft")
    decide(alice, first, {"decision": "reject", "comment": "mention the bug fixes"})

    second = pending_review(job_id, key="draft")
    assert second.id != first.id and second.attempt == 2
    assert second.proposed["text"] == "release notes (revised: mention the bug fixes)"
    assert second.proposed["human"]["feedback"] == "mention the bug fixes"
    assert second.proposed["human"]["rejected_output"]["text"] == "release notes"
    decide(alice, second, {"decision": "approve"})
    assert job_wait(job_id).status == "succeeded"
    # A rejection does not eat into the task's retry budget.
    draft = Task.objects.get(job_id=job_id, key="draft")
    assert (draft.attempt, draft.max_attempts) == (2, 3)


def test_a_rejection_past_the_gates_limit_fails_the_task_and_the_job(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "draft", "agent": "draft", "review": "after", "gate": {"max_rejections": 0}},
            {"key": "publish", "agent": "echo", "depends_on": ["draft"]},
        )
    }
    job_id = submit(alice, body)
    decide(alice, pending_review(job_id, key="draft"), {"decision": "reject", "comment": "no"})
    job = job_wait(job_id)
    assert job.status == "failed"
    assert "output rejected 1 time(s)" in job.error
    assert Task.objects.get(job_id=job_id, key="publish").status == "skipped"


def test_a_plan_review_holds_the_job_until_an_edited_plan_is_approved(pipeline, alice):
    job_id = submit(
        alice,
        {
            "requirements": "plan me",
            "review_plan": True,
            "plan": plan({"key": "a", "agent": "echo", "input": {"v": 1}}),
        },
    )
    review = pending_review(job_id, kind="plan")
    job = Job.objects.get(pk=job_id)
    assert job.status == "awaiting_review" and not Task.objects.filter(job_id=job_id).exists()
    assert review.proposed["tasks"][0]["input"] == {"v": 1}

    bad = decide(alice, review, {"decision": "edit", "plan": {"tasks": [{"key": "a", "agent": "nope"}]}}, expect=400)
    assert "plan.tasks[0].agent" in bad["fields"]

    new_plan = plan(
        {"key": "a", "agent": "echo", "input": {"v": 2}}, {"key": "b", "agent": "echo", "depends_on": ["a"]}
    )
    decide(alice, review, {"decision": "edit", "plan": new_plan})
    assert job_wait(job_id).status == "succeeded"
    outputs = {t.key: t.output for t in Task.objects.filter(job_id=job_id)}
    assert outputs["a"]["input"] == {"v": 2} and set(outputs) == {"a", "b"}
    statuses = [e.status for e in events_of(job_id, "job.status")]
    assert statuses == ["submitted", "awaiting_review", "planning", "running", "succeeded"]


def test_a_rejected_plan_fails_the_job_without_running_anything(pipeline, alice):
    job_id = submit(alice, {"review_plan": True, "plan": plan({"key": "a", "agent": "echo"})})
    decide(alice, pending_review(job_id, kind="plan"), {"decision": "reject", "comment": "wrong approach"})
    job = Job.objects.get(pk=job_id)
    assert job.status == "failed" and "wrong approach" in job.error
    assert not Task.objects.filter(job_id=job_id).exists()


def test_a_before_gate_runs_the_task_with_the_edited_input(pipeline, alice):
    body = {"plan": plan({"key": "send", "agent": "echo", "input": {"to": "everyone"}, "review": "before"})}
    job_id = submit(alice, body)
    review = pending_review(job_id, key="send")
    task = Task.objects.get(job_id=job_id, key="send")
    assert (task.status, task.attempt, review.proposed) == ("awaiting_review", 0, {"to": "everyone"})
    decide(alice, review, {"decision": "edit", "input": {"to": "the team"}})
    assert job_wait(job_id).status == "succeeded"
    assert Task.objects.get(pk=task.pk).output["input"] == {"to": "the team"}


def test_a_question_frees_the_worker_and_the_agent_resumes_with_the_answer(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "ask", "agent": "asker", "input": {"question": "Which colour?", "options": ["red", "blue"]}}
        )
    }
    job_id = submit(alice, body)
    review = pending_review(job_id, key="ask", kind="question")
    assert review.proposed == {"question": "Which colour?", "options": ["red", "blue"]}
    assert Task.objects.get(job_id=job_id, key="ask").status == "awaiting_input"

    # The only worker is free while the question waits: another job runs to the end.
    other = submit(alice, {"plan": plan({"key": "quick", "agent": "echo"})})
    assert job_wait(other, timeout=15).status == "succeeded"

    assert decide(alice, review, {"decision": "respond", "answer": "green"}, expect=400)["fields"] == {
        "answer": ["must be one of: red, blue"]
    }
    assert decide(alice, review, {"decision": "approve"}, expect=400)["fields"]["decision"]
    decide(alice, review, {"decision": "respond", "answer": "blue"})
    assert job_wait(job_id).status == "succeeded"
    assert Task.objects.get(job_id=job_id, key="ask").output == {"answer": "blue", "attempt": 2}


def test_two_parallel_gates_are_pending_at_once_and_resume_independently(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "left", "agent": "draft", "input": {"topic": "L"}, "review": "after"},
            {"key": "right", "agent": "draft", "input": {"topic": "R"}, "review": "after"},
            {"key": "left_next", "agent": "echo", "depends_on": ["left"]},
            {"key": "join", "agent": "echo", "depends_on": ["left_next", "right"]},
        )
    }
    job_id = submit(alice, body)
    left = pending_review(job_id, key="left")
    right = pending_review(job_id, key="right")
    decide(alice, left, {"decision": "approve"})
    wait_for(lambda: Task.objects.get(job_id=job_id, key="left_next").status == "succeeded", message="left_next")
    assert Task.objects.get(job_id=job_id, key="right").status == "awaiting_review"
    assert Review.objects.get(pk=right.pk).status == "pending"
    assert Task.objects.get(job_id=job_id, key="join").status == "pending"
    decide(alice, right, {"decision": "edit", "output": "R by hand"})
    assert job_wait(job_id).status == "succeeded"
    join = Task.objects.get(job_id=job_id, key="join")
    assert join.output["upstream"]["right"] == "R by hand"


def test_a_passed_deadline_applies_the_default_outcome_after_a_reminder(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "draft", "agent": "draft", "review": "after", "gate": {"deadline": 2, "default": "approve"}}
        )
    }
    job_id = submit(alice, body)
    review = pending_review(job_id, key="draft")
    assert review.deadline is not None and review.default_outcome == "approve"
    assert job_wait(job_id, timeout=15).status == "succeeded"
    review.refresh_from_db()
    assert (review.status, review.decision, review.decided_by) == ("expired", "approve", None)
    types = [e.type for e in JobEvent.objects.filter(job_id=job_id).order_by("seq")]
    assert types.index("review.opened") < types.index("review.reminder") < types.index("review.decided")
    assert events_of(job_id, "review.decided")[0].data["deadline_passed"] is True


def test_a_deadline_whose_default_is_fail_fails_the_job(pipeline, alice):
    body = {
        "plan": plan(
            {"key": "gate", "agent": "echo", "review": "before", "gate": {"deadline": 1, "default": "fail"}},
            {"key": "side", "agent": "sleepy", "input": {"seconds": 20}},
        )
    }
    job_id = submit(alice, body)
    job = job_wait(job_id, timeout=15)
    assert job.status == "failed" and "deadline passed" in job.error
    statuses = {t.key: t.status for t in Task.objects.filter(job_id=job_id)}
    assert statuses == {"gate": "cancelled", "side": "cancelled"}


def test_a_claimed_review_can_only_be_decided_by_its_claimant(pipeline, alice):
    editors = Group.objects.create(name="editors")
    carol = client_for(make_user("carol"))
    carol.user.groups.add(editors)
    alice.user.groups.add(editors)  # a gate goes to a group its submitter belongs to (jobs.reviews.gate_policy)
    job_id = submit(
        alice, {"plan": plan({"key": "draft", "agent": "draft", "review": "after", "gate": {"group": "editors"}})}
    )
    review = pending_review(job_id, key="draft")
    assert [r["id"] for r in carol.get("/reviews?status=pending").json()["results"]] == [str(review.id)]

    assert carol.post(f"/reviews/{review.id}/claim").json()["claimed_by"] == "carol"
    assert carol.post(f"/reviews/{review.id}/claim").status_code == 200  # claiming again is a no-op
    conflict = alice.post(f"/reviews/{review.id}/claim")
    assert conflict.status_code == 409 and conflict.json()["error"] == "review_claimed"
    assert decide(alice, review, {"decision": "approve"}, expect=409)["error"] == "review_claimed"
    # Another member may not release carol's claim (the job's owner may: test_admin_permissions.py).
    dave = client_for(make_user("dave"))
    dave.user.groups.add(editors)
    assert dave.post(f"/reviews/{review.id}/release").status_code == 409

    assert carol.post(f"/reviews/{review.id}/release").json()["claimed_by"] is None
    assert alice.post(f"/reviews/{review.id}/claim").json()["claimed_by"] == "alice"
    decide(alice, review, {"decision": "approve"})
    assert job_wait(job_id).status == "succeeded"
    actions = [(a.action, a.actor.username if a.actor else None) for a in ReviewAction.objects.filter(review=review)]
    assert actions == [
        ("opened", None),
        ("claimed", "carol"),
        ("claimed", "carol"),
        ("released", "carol"),
        ("claimed", "alice"),
        ("decided", "alice"),
    ]


def test_a_second_decision_is_a_conflict_and_another_users_review_is_not_found(pipeline, alice, bob):
    job_id = submit(alice, {"plan": plan({"key": "draft", "agent": "draft", "review": "after"})})
    review = pending_review(job_id, key="draft")

    assert bob.get(f"/reviews/{review.id}").status_code == 404
    assert bob.post(f"/reviews/{review.id}/decision", {"decision": "approve"}, format="json").status_code == 404
    assert bob.post(f"/reviews/{review.id}/claim").status_code == 404
    assert bob.get("/reviews?status=pending").json()["results"] == []
    assert Review.objects.get(pk=review.pk).status == "pending"

    decide(alice, review, {"decision": "approve"})
    again = decide(alice, review, {"decision": "reject"}, expect=409)
    assert again["error"] == "review_already_decided"
    assert job_wait(job_id).status == "succeeded"


def test_an_http_agent_asks_a_question_and_is_called_again_with_the_answer(pipeline, alice):
    from tests.workers.servers import ScriptedServer

    staff = client_for(make_user("http-operator", staff=True))

    def script(n: int, body: dict):
        if "answer" in body["human"]:
            return 200, {"output": {"shipped": body["human"]["answer"] == "yes"}}
        return 200, {"ask": {"question": "Ship it?", "options": ["yes", "no"]}}

    server = ScriptedServer(8161, script)
    try:
        agent = {
            "name": "ship-http",
            "kind": "http",
            "url": "http://127.0.0.1:8161/run",
            "secret": "s3cret",
            "timeout": 5,
        }
        assert staff.post("/agents", agent, format="json").status_code == 201
        job_id = submit(alice, {"plan": plan({"key": "ship", "agent": "ship-http"})})
        review = pending_review(job_id, key="ship", kind="question")
        assert review.proposed == {"question": "Ship it?", "options": ["yes", "no"]}
        decide(alice, review, {"decision": "respond", "answer": "yes"})
        assert job_wait(job_id).status == "succeeded"
        assert Task.objects.get(job_id=job_id).output == {"shipped": True}
        assert server.calls == 2 and server.requests[1]["body"]["human"]["answer"] == "yes"
    finally:
        server.close()
