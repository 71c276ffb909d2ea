"""A tiny HTTP agent in plain stdlib Python: copy it, run it, register it.

    AGENT_SECRET=change-me python examples/http_agent.py --port 8150

then, as staff::

    curl -X POST http://127.0.0.1:8000/agents -H "Authorization: Token $STAFF_TOKEN" \\
      -H 'Content-Type: application/json' -d '{"name": "shout", "kind": "http",
      "url": "http://127.0.0.1:8150/", "secret": "change-me", "timeout": 10}'

The worker POSTs {"task", "job", "input", "upstream", "human"} with
X-Agentbus-Timestamp and X-Agentbus-Signature: sha256=HMAC(secret, "<ts>.<body>").
Answer {"output": ...}; a 4xx fails the task for good, a 5xx is retried.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("AGENT_SECRET", "change-me").encode()
MAX_AGE = 300  # seconds; older requests are refused, so a captured one cannot be replayed


def signature_valid(headers, body: bytes) -> bool:
    timestamp = headers.get("X-Agentbus-Timestamp", "")
    signature = headers.get("X-Agentbus-Signature", "")
    try:
        fresh = abs(time.time() - int(timestamp)) <= MAX_AGE
    except ValueError:
        return False
    expected = "sha256=" + hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return fresh and hmac.compare_digest(expected, signature)


class AgentHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not signature_valid(self.headers, body):
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
