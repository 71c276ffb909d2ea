"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")
# Django must be set up before anything imports models (the websocket routes do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter

from accounts.ws_auth import TokenAuthMiddleware
from agentbus_site.websocket_urls import websocket_urlpatterns
from core.body_limit import BodyLimit
from protocols.asgi import ProtocolRouter

application = ProtocolTypeRouter(
    {
        # The body limit before Django spools the body (core/body_limit.py); /mcp and /a2a
        # (MCP and A2A, protocols/) beside Django; everything else is Django's.
        "http": BodyLimit(ProtocolRouter(django_asgi_app)),
        # Session first (browsers), then an Authorization: Token header overrides it (programs).
        "websocket": AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
