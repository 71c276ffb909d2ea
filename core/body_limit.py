"""The request body limit, enforced before the body is read.

Django checks ``DATA_UPLOAD_MAX_MEMORY_SIZE`` when a view reads ``request.body``, but its
ASGI handler first spools the whole body (30 MB from an anonymous client was accepted
and written to a temporary file before the 413). This ASGI wrapper sits in front:

1. a ``Content-Length`` above the limit is answered 413 at once, nothing read;
2. otherwise the body's chunks are counted as they arrive (chunked uploads have no
   length), and the request is answered 413 as soon as they pass the limit;
3. within the limit, the chunks already read are handed to Django unchanged.

The limit is ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``AGENTBUS_MAX_BODY_BYTES``), the same one
Django applies, so answers do not change, only when they are given. A reverse proxy in
front should refuse larger bodies too (``client_max_body_size`` in nginx), see
docs/readme/security.md.
"""

from __future__ import annotations

import json

from django.conf import settings

_TOO_LARGE = json.dumps(
    {"error": "request_too_large", "detail": "The request body is larger than the server accepts."}
).encode()


async def _refuse(send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": _TOO_LARGE})


class BodyLimit:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        return await _refuse(send)
                except ValueError:
                    return await _refuse(send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: let Django see it
            size += len(message.get("body", b""))
            if size > limit:
                return await _refuse(send)
            if not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)
