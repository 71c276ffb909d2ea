"""Websocket routes (Channels), with or without a trailing slash like the REST paths.

Every route sits behind ``accounts.ws_auth.TokenAuthMiddleware`` (in asgi.py), so
a consumer finds the session's or the token's user in ``scope["user"]``.
"""

from __future__ import annotations

from django.urls import re_path

from jobs.consumers import JobEventsConsumer, JobListConsumer
from jobs.reviews.consumers import ReviewInboxConsumer

UUID = r"(?P<job_id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"

websocket_urlpatterns: list = [
    re_path(rf"^ws/jobs/{UUID}/?$", JobEventsConsumer.as_asgi(), name="ws-job-events"),
    re_path(r"^ws/jobs/?$", JobListConsumer.as_asgi(), name="ws-job-list"),
    re_path(r"^ws/reviews/?$", ReviewInboxConsumer.as_asgi(), name="ws-reviews"),
]
