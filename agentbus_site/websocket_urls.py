"""Websocket routes (Channels). The live-status consumers hook in here."""

from __future__ import annotations

websocket_urlpatterns: list = []
