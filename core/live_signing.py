"""The live layer trusts nothing from Redis that it cannot verify.

Anyone who can write to Redis could publish on the channel layer, and whatever arrived
reached users' sockets and pages. Queue messages were already signed (core.queue);
these are now too: ``channel_sender.group_send_nowait`` wraps each message as
``{"type", "signed": <JSON of the message and its time>, "sig": HMAC-SHA256}`` and each
consumer handler, decorated with :func:`live_verified`, unwraps it, dropping (and
logging) a message with a bad signature, without one, or older than
``AGENTBUS_LIVE_MAX_AGE`` (a replay). The key is ``AGENTBUS_LIVE_SIGNING_KEY`` or one
derived from ``SECRET_KEY``, so every web, orchestrator and worker process agrees.

channels_redis' ``symmetric_encryption_keys`` was the other option; a message it cannot
decrypt raises inside the consumer's receive loop and closes the socket, so one forged
message would close every socket of its group. A dropped message costs nothing: the
job event log is the truth that consumers catch up from.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time

from django.conf import settings

logger = logging.getLogger(__name__)


@functools.cache
def _key(configured: str, secret: str) -> bytes:
    if configured:
        return configured.encode()
    return hashlib.sha256(b"agentbus.live-layer." + secret.encode()).digest()


def _mac(body: str) -> str:
    key = _key(settings.AGENTBUS_LIVE_SIGNING_KEY, settings.SECRET_KEY)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def live_sign(message: dict) -> dict:
    """The channel-layer form of ``message`` (its ``type`` stays outside, for dispatch)."""
    body = json.dumps({"message": message, "at": time.time()}, separators=(",", ":"), default=str)
    return {"type": message["type"], "signed": body, "sig": _mac(body)}


def live_verify(envelope: dict) -> dict | None:
    """The original message if the envelope is genuine and fresh, else None."""
    body, sig = envelope.get("signed"), envelope.get("sig")
    if not isinstance(body, str) or not isinstance(sig, str) or not hmac.compare_digest(_mac(body), sig):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if time.time() - payload.get("at", 0) > settings.AGENTBUS_LIVE_MAX_AGE:
        return None
    message = payload.get("message")
    if not isinstance(message, dict) or message.get("type") != envelope.get("type"):
        return None
    return message


def live_verified(handler):
    """Decorates a consumer's channel-layer handler: it sees only verified messages."""

    @functools.wraps(handler)
    async def verified(self, envelope: dict) -> None:
        message = live_verify(envelope)
        if message is None:
            logger.warning("dropped a channel-layer %r message that failed verification", envelope.get("type"))
            return
        await handler(self, message)

    return verified
