"""Live status over websockets: a real daphne server, the real Redis channel layer, and
(where a job must run) the real orchestrator and worker."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from websockets.exceptions import InvalidStatus

from core.redis import redis_client
from jobs.events import NewEvent, events_append
from jobs.models import Job, JobEvent
from tests.conftest import job_wait, make_user, plan
from tests.live.conftest import (
    nothing_more,
    receive,
    receive_until,
    token_of,
    ws_connect,
)

pytestmark = pytest.mark.django_db(transaction=True)

TERMINAL = ("succeeded", "failed", "cancelled")


def is_final(message: dict) -> bool:
    return message["type"] == "job.status" and message.get("status") in TERMINAL


def submit(client, body: dict) -> str:
    response = client.post("/jobs", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def log_of(job_id) -> list[dict]:
    return [e.as_message() for e in JobEvent.objects.filter(job_id=job_id).order_by("seq")]


def a_quiet_job(owner) -> Job:
    """A finished job the orchestrator leaves alone, whose log the test writes itself."""
    return Job.objects.create(owner=owner, plan={"tasks": []}, status="succeeded")


SLOW_CHAIN = plan(
    {"key": "a", "agent": "sleepy", "input": {"seconds": 0.5}},
    {"key": "b", "agent": "echo", "depends_on": ["a"]},
    {"key": "c", "agent": "sleepy", "input": {"seconds": 0.3}, "depends_on": ["b"]},
)


def test_a_client_receives_a_jobs_events_in_order_with_gap_free_seq_up_to_its_final_state(pipeline, web, alice):
    job_id = submit(alice, {"plan": SLOW_CHAIN})
    with ws_connect(web, f"/ws/jobs/{job_id}", authorization=token_of(alice)) as ws:
        messages = receive_until(ws, is_final)
        nothing_more(ws, wait=0.5)

    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert messages[0]["status"] == "submitted" and messages[-1]["status"] == "succeeded"
    assert messages == log_of(job_id)  # exactly what the log says, field for field
    assert {m["type"] for m in messages} >= {"job.status", "task.status", "task.progress"}
    assert all(m["job"] == job_id for m in messages)


def test_reconnecting_with_after_gets_exactly_the_missed_events(pipeline, web, alice):
    job_id = submit(alice, {"plan": SLOW_CHAIN})
    with ws_connect(web, f"/ws/jobs/{job_id}", authorization=token_of(alice)) as ws:
        first = [receive(ws), receive(ws), receive(ws)]
    assert [m["seq"] for m in first] == [1, 2, 3]
    job_wait(job_id)  # the job goes on, and finishes, while the client is away

    with ws_connect(web, f"/ws/jobs/{job_id}?after=3", authorization=token_of(alice)) as ws:
        rest = receive_until(ws, is_final)
        nothing_more(ws, wait=0.5)
    assert first + rest == log_of(job_id)


def test_a_live_client_resuming_mid_job_misses_nothing_and_repeats_nothing(pipeline, web, alice):
    job_id = submit(alice, {"plan": SLOW_CHAIN})
    with ws_connect(web, f"/ws/jobs/{job_id}", authorization=token_of(alice)) as ws:
        first = [receive(ws), receive(ws)]
    # Reconnect at once, while the job is still producing events: the switch from the
    # log to live events must neither drop nor duplicate one.
    with ws_connect(web, f"/ws/jobs/{job_id}?after={first[-1]['seq']}", authorization=token_of(alice)) as ws:
        rest = receive_until(ws, is_final)
    seqs = [m["seq"] for m in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert first + rest == log_of(job_id)


def test_another_users_job_refuses_the_connection(web, alice, bob):
    job = a_quiet_job(alice.user)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(web, f"/ws/jobs/{job.id}", authorization=token_of(bob))
    assert refused.value.response.status_code == 403

    # The owner is welcome, and so is staff.
    staff = make_user("operator", staff=True)
    from tests.conftest import client_for

    for client in (alice, client_for(staff)):
        with ws_connect(web, f"/ws/jobs/{job.id}", authorization=token_of(client)) as ws:
            nothing_more(ws, wait=0.2)


@pytest.mark.parametrize(
    "path, authorization",
    [
        ("/ws/jobs/{job}", None),  # no credentials
        ("/ws/jobs/{job}", "Token not-a-real-token"),  # a wrong token is not a fallback to anonymous
        ("/ws/jobs/{job}", "Basic abc"),  # not a scheme we accept
        ("/ws/jobs/00000000-0000-0000-0000-000000000000", "alice"),  # no such job
        ("/ws/jobs/{job}?after=-1", "alice"),
        ("/ws/jobs/{job}?after=abc", "alice"),
        ("/ws/jobs", None),
    ],
)
def test_a_connection_without_a_valid_user_job_or_position_is_refused(web, alice, path, authorization):
    job = a_quiet_job(alice.user)
    if authorization == "alice":
        authorization = token_of(alice)
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(web, path.format(job=job.id), authorization=authorization)
    assert refused.value.response.status_code == 403


def appended_but_never_published(job_id, event: NewEvent) -> None:
    """The event is committed, and the process dies before publishing it."""
    with transaction.atomic():
        events_append(job_id, [event])
        connection.run_on_commit.clear()


def channel_layer_restarted() -> None:
    """What a Redis restart does to the channel layer, limited to the test's Redis db:
    its keys (list layer) are gone and its pub/sub connections (pubsub layer) are cut."""
    client = redis_client()
    for key in client.scan_iter("agentbus:channels*"):
        client.delete(key)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    for info in client.client_list():
        if int(info["db"]) == db and "P" in info["flags"]:
            client.client_kill_filter(_id=info["id"])


def test_events_survive_a_channel_layer_hiccup_through_replay(web, alice):
    job = a_quiet_job(alice.user)
    with ws_connect(web, f"/ws/jobs/{job.id}", authorization=token_of(alice)) as ws:
        events_append(job.id, [NewEvent("test.note", data={"n": 1})])
        assert receive(ws)["n"] == 1

        # Two events reach the log but never the channel layer.
        appended_but_never_published(job.id, NewEvent("test.note", data={"n": 2}))
        appended_but_never_published(job.id, NewEvent("test.note", data={"n": 3}))
        # The next live event reveals the gap; the consumer fills it from the log first.
        events_append(job.id, [NewEvent("test.note", data={"n": 4})])
        assert [receive(ws)["n"] for _ in range(3)] == [2, 3, 4]

        # A lost event with nothing after it still arrives, by the periodic check.
        appended_but_never_published(job.id, NewEvent("job.status", status="succeeded", data={"n": 5}))
        assert receive(ws, timeout=5)["n"] == 5

        # Redis loses the channel layer's state (restarted): group membership is gone
        # and subscriber connections are cut, yet later events still arrive, and live
        # ones again once the socket is back in its group.
        channel_layer_restarted()
        events_append(job.id, [NewEvent("test.note", data={"n": 6})])
        assert receive(ws, timeout=5)["n"] == 6
        time.sleep(1.2)  # a resync or two: the socket is back in its group
        events_append(job.id, [NewEvent("test.note", data={"n": 7})])
        assert receive(ws, timeout=0.4)["n"] == 7
        nothing_more(ws, wait=0.8)
    assert [e.seq for e in JobEvent.objects.filter(job=job)] == [1, 2, 3, 4, 5, 6, 7]


def test_events_published_out_of_order_reach_the_client_in_order_once(web, alice):
    job = a_quiet_job(alice.user)
    with ws_connect(web, f"/ws/jobs/{job.id}", authorization=token_of(alice)) as ws:
        rows = events_append(job.id, [NewEvent("test.note", data={"n": n}) for n in (1, 2, 3)])
        # Two writers committing one after the other may publish in the other order;
        # here the layer delivers 3, then 1 to 3 again.
        from jobs.events import events_publish

        events_publish([rows[2]])
        events_publish(rows)
        assert [receive(ws)["seq"] for _ in range(3)] == [1, 2, 3]
        nothing_more(ws, wait=0.8)


def test_the_job_list_socket_streams_status_changes_of_the_callers_jobs_only(web, alice, bob):
    mine, theirs = a_quiet_job(alice.user), a_quiet_job(bob.user)
    with ws_connect(web, "/ws/jobs", authorization=token_of(alice)) as ws:
        events_append(theirs.id, [NewEvent("job.status", status="running")])
        events_append(mine.id, [NewEvent("task.progress", data={"progress": 0.5})])  # not a list change
        events_append(mine.id, [NewEvent("job.status", status="running")])
        message = receive(ws)
        assert (message["job"], message["type"], message["status"]) == (str(mine.id), "job.status", "running")
        nothing_more(ws, wait=0.5)


def test_a_browser_session_authenticates_from_an_allowed_origin_only(web, alice):
    job = a_quiet_job(alice.user)
    browser = Client()
    assert browser.login(username="alice", password="pw-alice")
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    with ws_connect(web, f"/ws/jobs/{job.id}", additional_headers={"Cookie": cookie}, origin=web.http) as ws:
        nothing_more(ws, wait=0.2)
    # Another site's page cannot ride the user's cookie.
    with pytest.raises(InvalidStatus):
        ws_connect(web, f"/ws/jobs/{job.id}", additional_headers={"Cookie": cookie}, origin="http://evil.example")
    assert get_user_model().objects.filter(username="alice").exists()


def test_staff_watch_every_users_job_list_changes(web, alice, bob):
    from tests.conftest import client_for

    operator = client_for(make_user("list-operator", staff=True))
    mine, theirs = a_quiet_job(alice.user), a_quiet_job(bob.user)
    with ws_connect(web, "/ws/jobs/", authorization=token_of(operator)) as ws:
        events_append(mine.id, [NewEvent("job.status", status="running")])
        events_append(theirs.id, [NewEvent("job.status", status="failed")])
        seen = {receive(ws)["job"], receive(ws)["job"]}
        assert seen == {str(mine.id), str(theirs.id)}
        nothing_more(ws, wait=0.5)  # once each: staff are not also in their own group
