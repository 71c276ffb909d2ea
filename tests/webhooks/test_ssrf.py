"""SSRF: with AGENTBUS_WEBHOOK_ALLOW_PRIVATE off (production's default), a webhook URL that
reaches loopback, private, link-local or other non-public addresses is refused when it is
given, and a delivery to one is never sent, even to a live server."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.conftest import plan
from webhooks.http import signed_post
from webhooks.models import WebhookSubscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def private_refused(settings):
    settings.AGENTBUS_WEBHOOK_ALLOW_PRIVATE = False


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",  # a name that resolves to loopback
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4 loopback inside IPv6
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number
    ],
)
def test_a_webhook_to_a_non_public_address_is_refused(alice, private_refused, url):
    response = alice.post("/webhooks", {"url": url, "events": ["job.finished"]}, format="json")
    assert response.status_code == 400, response.content
    assert "url" in response.json()["fields"]
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "http://user:pw@example.org/", "not a url", "http:///x", "http://example.org:99999/"]
)
def test_a_webhook_url_that_is_not_plain_http_is_refused(alice, url):
    response = alice.post("/webhooks", {"url": url, "events": ["job.finished"]}, format="json")
    assert response.status_code == 400
    assert "url" in response.json()["fields"]


def test_a_jobs_notify_to_loopback_is_refused_and_no_job_is_written(alice, private_refused):
    body = {"plan": plan({"key": "a", "agent": "echo"}), "notify": {"url": "http://127.0.0.1:9/"}}
    response = alice.post("/jobs", body, format="json")
    assert response.status_code == 400
    assert "notify.url" in response.json()["fields"]
    assert not Job.objects.exists()


def test_a_delivery_to_a_live_server_on_loopback_is_never_sent(receiver, settings):
    server = receiver(secret="s")
    send = {
        "url": server.url,
        "secret": "s",
        "delivery_id": "d1",
        "event": "job.finished",
        "body": b"{}",
        "timestamp": "1",
    }

    settings.AGENTBUS_WEBHOOK_ALLOW_PRIVATE = False
    refused = signed_post(**send)
    assert not refused.ok and refused.error.startswith("refused:") and "loopback" in refused.error
    assert server.received == []

    # The same call with the operator's setting on reaches it: the refusal above was the check.
    settings.AGENTBUS_WEBHOOK_ALLOW_PRIVATE = True
    assert signed_post(**send).status_code == 401  # our receiver: the timestamp "1" is too old
    assert len(server.received) == 1
