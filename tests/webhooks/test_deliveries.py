"""Webhook deliveries end to end: jobs run by real orchestrator and worker processes, events
delivered by the orchestrator's sender to a real HTTP server that verifies each signature."""

from __future__ import annotations

import pytest

from tests.conftest import job_wait, plan, wait_for
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = plan({"key": "a", "agent": "echo", "input": {"n": 1}})


def subscribe(client, url: str, events: list[str], secret: str = "s3cret") -> dict:
    response = client.post("/webhooks", {"url": url, "events": events, "secret": secret}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def accepted(server, event: str) -> list[dict]:
    return [r for r in server.received if r["valid"] and r["event"].get("event") == event]


def test_a_job_finished_webhook_is_signed_and_retried_until_the_receiver_accepts_it(pipeline, alice, receiver):
    server = receiver(secret="s3cret", fail_first=2)
    hook = subscribe(alice, server.url, ["job.finished"])
    assert hook["secret"] == "s3cret"
    job_id = submit(alice, {"plan": ECHO})
    job_wait(job_id)

    wait_for(lambda: len(accepted(server, "job.finished")) == 3, timeout=30, message="three attempts")
    attempts = accepted(server, "job.finished")
    # The same delivery each time, each signature verified by the receiver.
    assert len({a["headers"]["X-Agentbus-Delivery"] for a in attempts}) == 1
    assert all(a["valid"] for a in server.received)
    event = attempts[-1]["event"]
    assert event["job"] == job_id and event["status"] == "succeeded" and event["type"] == "job.status"

    def delivered():
        page = alice.get(f"/webhooks/{hook['id']}/deliveries").json()
        return page["results"] if page["results"] and page["results"][0]["status"] == "succeeded" else None

    (log,) = wait_for(delivered, timeout=10, message="the delivery log to say succeeded")
    assert log["attempts"] == 3 and log["last_status_code"] == 204 and log["last_error"] == ""
    assert log["delivered_at"] is not None
    # Only the events asked for: no job.status, no task events.
    assert {r["event"]["event"] for r in server.received} == {"job.finished"}


def test_task_failed_and_job_finished_reach_a_subscriber_of_both(pipeline, alice, bob, receiver):
    server = receiver(secret="s3cret")
    subscribe(alice, server.url, ["task.failed", "job.finished"])
    job_id = submit(alice, {"plan": plan({"key": "x", "agent": "broken"})})
    submit(bob, {"plan": ECHO})  # bob has no subscription: nothing of his is sent
    job_wait(job_id)
    wait_for(lambda: accepted(server, "task.failed") and accepted(server, "job.finished"), timeout=30, message="both")
    assert accepted(server, "task.failed")[0]["event"]["status"] == "failed"
    assert accepted(server, "job.finished")[0]["event"]["status"] == "failed"
    assert {r["event"]["job"] for r in server.received} == {job_id}


def test_a_jobs_own_notify_is_delivered_with_its_secret(pipeline, alice, receiver):
    server = receiver(secret="per-job")
    job_id = submit(
        alice, {"plan": ECHO, "notify": {"url": server.url, "events": ["job.finished"], "secret": "per-job"}}
    )
    job_wait(job_id)
    wait_for(lambda: accepted(server, "job.finished"), timeout=30, message="the job's notify")
    assert accepted(server, "job.finished")[0]["event"]["job"] == job_id


def test_a_delivery_that_keeps_failing_ends_failed_and_is_redelivered_by_hand(pipeline, alice, receiver, settings):
    server = receiver(secret="s3cret", fail_first=10**6)
    hook = subscribe(alice, server.url, ["job.finished"])
    job_wait(submit(alice, {"plan": ECHO}))
    failed = wait_for(
        lambda: WebhookDelivery.objects.filter(status="failed").first(), timeout=60, message="the delivery to fail"
    )
    assert failed.attempts == settings.AGENTBUS_WEBHOOK_MAX_ATTEMPTS
    assert failed.last_status_code == 500 and "HTTP 500" in failed.last_error
    sent = len(server.received)

    server.fail_first = 0
    response = alice.post(f"/webhooks/{hook['id']}/deliveries/{failed.id}/redeliver")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    wait_for(lambda: WebhookDelivery.objects.get(pk=failed.id).status == "succeeded", timeout=20, message="redelivery")
    assert len(server.received) == sent + 1


def test_a_redirect_is_not_followed(pipeline, alice, receiver):
    server = receiver(secret="s3cret", redirect=True)
    subscribe(alice, server.url, ["job.finished"])
    job_wait(submit(alice, {"plan": ECHO}))
    delivery = wait_for(
        lambda: WebhookDelivery.objects.filter(last_status_code=302).first(), timeout=30, message="an attempt"
    )
    assert "redirects are not followed" in delivery.last_error
    assert {r["path"] for r in server.received} == {"/hook"}


def test_another_users_webhook_is_a_404(alice, bob, receiver):
    hook = subscribe(alice, receiver(secret="x").url, ["job.finished"])
    for method, path in [("get", ""), ("patch", ""), ("delete", ""), ("get", "/deliveries")]:
        assert getattr(bob, method)(f"/webhooks/{hook['id']}{path}", {}, format="json").status_code == 404
    assert "secret" not in alice.get(f"/webhooks/{hook['id']}").json()
