"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentbus_site.settings")
# Django must be set up before anything imports models (the websocket routes do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter

from agentbus_site.body_limit import BodyLimit
from agentbus_site.websocket_urls import websocket_urlpatterns
from agentbus_site.ws_auth import TokenAuthMiddleware

application = ProtocolTypeRouter(
    {
        # The body limit before Django spools the body (agentbus_site/body_limit.py).
        "http": BodyLimit(django_asgi_app),
        # Session first (browsers), then an Authorization: Token header overrides it (programs).
        "websocket": AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
