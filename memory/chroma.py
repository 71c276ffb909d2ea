"""Our one door to ChromaDB. Services talk to memory through here, never to chromadb."""

from __future__ import annotations

import json
import urllib.request

from django.conf import settings


def chroma_heartbeat(timeout: float = 2.0) -> bool:
    """True when the Chroma server at CHROMA_URL answers its heartbeat."""
    url = settings.CHROMA_URL.rstrip("/") + "/api/v2/heartbeat"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (operator-set URL)
            return response.status == 200 and "nanosecond heartbeat" in json.loads(response.read() or b"{}")
    except (OSError, ValueError):
        return False
