"""``/ws/reviews``: the caller's review inbox, live.

The consumer only forwards: ``jobs.reviews.reviews_publish`` sends every change of a
review (opened, claimed, released, decided, expired) after commit to the per-user group
of each person who may decide it, and to the staff group. Each frame is one
``{"type": "review.changed", "review": {...}}``, the review in the shape of
``jobs.reviews.review_summary``. Delivery is at-most-once; a client that reconnects
reloads the list from ``GET /reviews?status=pending``.

Closed before the handshake (HTTP 403) with 4401 when nobody is logged in.
"""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.ws_guard import CredentialRecheck
from core.live_signing import live_verified
from jobs.reviews.gates import STAFF_REVIEWS_GROUP, review_user_group

CLOSE_UNAUTHENTICATED = 4401


class ReviewInboxConsumer(CredentialRecheck, AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.groups_joined: list[str] = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.groups_joined = [review_user_group(user.id)]
        if user.is_staff:
            self.groups_joined.append(STAFF_REVIEWS_GROUP)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.recheck_start()  # credentials and access, while open (ws_guard)

    async def access_still_granted(self, user) -> bool:
        return user.is_staff or STAFF_REVIEWS_GROUP not in self.groups_joined  # a demoted staff member

    async def disconnect(self, code) -> None:
        await self.recheck_stop()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        """Clients only listen; a "ping" is answered so they can check the socket."""
        if text_data == "ping":
            await self.send(text_data="pong")

    @live_verified
    async def review_changed(self, event: dict) -> None:
        # A staff member who is also the owner gets the change twice; one frame is enough.
        key = (event["review"]["id"], event["review"]["status"], event["review"].get("claimed_by"))
        if getattr(self, "_last_sent", None) == key:
            return
        self._last_sent = key
        await self.send(text_data=json.dumps({"type": "review.changed", "review": event["review"]}))
