"""A tiny HTTP agent in plain stdlib Python: copy it, run it, register it.

    AGENT_SECRET=change-me python examples/http_agent.py --port 8150

then, as staff::

    curl -X POST http://127.0.0.1:8000/agents -H "Authorization: Token $STAFF_TOKEN" \\
      -H 'Content-Type: application/json' -d '{"name": "shout", "kind": "http",
      "url": "http://127.0.0.1:8150/", "secret": "change-me", "timeout": 10}'

The worker POSTs {"task", "job", "input", "upstream", "human"}, signed (v2) with
X-Agentbus-Agent, X-Agentbus-Timestamp, X-Agentbus-Nonce and
X-Agentbus-Signature-V2: sha256=HMAC(secret, "v2\nPOST\n<url>\n<agent>\n<ts>\n<nonce>\n" + body).
This agent refuses a bad signature, a stale timestamp, another agent's name and a nonce
it has already seen (a replay). With AGENT_REPLY_SECRET set (the agent's "reply_secret"
in agentbus) it signs each reply: X-Agentbus-Reply-Signature:
sha256=HMAC(reply_secret, "v2-reply\n<nonce>\n<status>\n" + reply body).
AGENT_URL is the URL agentbus is configured with (default http://<Host header><path>).
Answer {"output": ...}; a 4xx fails the task for good, a 5xx is retried.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("AGENT_SECRET", "change-me").encode()
REPLY_SECRET = os.environ.get("AGENT_REPLY_SECRET", "").encode()
AGENT_NAME = os.environ.get("AGENT_NAME", "")  # if set, requests for another agent are refused
AGENT_URL = os.environ.get("AGENT_URL", "")
MAX_AGE = 300  # seconds; older requests are refused, and nonces are remembered this long

_seen: dict[str, float] = {}  # nonce -> when it was seen
_seen_lock = threading.Lock()


def nonce_fresh(nonce: str) -> bool:
    """True the first time a nonce is seen within MAX_AGE (a replay is refused)."""
    now = time.time()
    with _seen_lock:
        for old, at in list(_seen.items()):
            if now - at > MAX_AGE:
                del _seen[old]
        if not nonce or nonce in _seen:
            return False
        _seen[nonce] = now
        return True


def signature_valid(headers, body: bytes, url: str) -> bool:
    timestamp = headers.get("X-Agentbus-Timestamp", "")
    nonce = headers.get("X-Agentbus-Nonce", "")
    agent = headers.get("X-Agentbus-Agent", "")
    signature = headers.get("X-Agentbus-Signature-V2", "")
    try:
        fresh = abs(time.time() - int(timestamp)) <= MAX_AGE
    except ValueError:
        return False
    if not fresh or (AGENT_NAME and agent != AGENT_NAME):
        return False
    signed = f"v2\nPOST\n{url}\n{agent}\n{timestamp}\n{nonce}\n".encode() + body
    expected = "sha256=" + hmac.new(SECRET, signed, hashlib.sha256).hexdigest()
    # The nonce is spent only by a request whose signature is right.
    return hmac.compare_digest(expected, signature) and nonce_fresh(nonce)


class AgentHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.nonce = self.headers.get("X-Agentbus-Nonce", "")
        url = AGENT_URL or f"http://{self.headers.get('Host', '')}{self.path}"
        if not signature_valid(self.headers, body, url):
            return self.reply(401, {"error": "bad signature"})
        request = json.loads(body)
        text = request["input"].get("text")
        if not isinstance(text, str):
            return self.reply(422, {"error": "input.text must be a string"})  # not retried
        upstream = " ".join(str(v) for v in request["upstream"].values())
        self.reply(200, {"output": {"shout": (text + " " + upstream).strip().upper()}})

    def reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        if REPLY_SECRET:
            signed = f"v2-reply\n{self.nonce}\n{status}\n".encode() + data
            mac = hmac.new(REPLY_SECRET, signed, hashlib.sha256).hexdigest()
            self.send_header("X-Agentbus-Reply-Signature", "sha256=" + mac)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An example agentbus HTTP agent.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8150)
    args = parser.parse_args()
    print(f"shout agent on http://{args.host}:{args.port}/")
    ThreadingHTTPServer((args.host, args.port), AgentHandler).serve_forever()
