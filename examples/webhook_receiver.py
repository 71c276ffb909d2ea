"""A webhook receiver in plain stdlib Python that verifies agentbus's signature.

    WEBHOOK_SECRET=<the secret POST /webhooks gave you> python examples/webhook_receiver.py --port 9100

Each delivery is a POST of one JSON event with these headers:

    X-Agentbus-Timestamp: 1764662400                 (Unix seconds, when it was sent)
    X-Agentbus-Delivery:  6f1c2b1e-...               (the same on every retry: deduplicate on it)
    X-Agentbus-Event:     job.finished
    X-Agentbus-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<delivery id>.<body>")>

Answer any 2xx to accept it; anything else (or no answer) is retried with backoff.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_AGE = 300  # seconds; an older delivery is refused, so a captured one cannot be replayed


def signature_valid(secret: bytes, headers, body: bytes, *, max_age: int = MAX_AGE) -> bool:
    timestamp = headers.get("X-Agentbus-Timestamp", "")
    delivery = headers.get("X-Agentbus-Delivery", "")
    signature = headers.get("X-Agentbus-Signature", "")
    try:
        fresh = abs(time.time() - int(timestamp)) <= max_age
    except ValueError:
        return False
    message = timestamp.encode() + b"." + delivery.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret, message, hashlib.sha256).hexdigest()
    return fresh and hmac.compare_digest(expected, signature)


class Receiver(ThreadingHTTPServer):
    """Verifies each delivery; answers ``fail_first`` of them with a 500 first (to watch
    the retries), then 204. ``received`` lists (headers, event, signature ok) per request."""

    daemon_threads = True

    def __init__(self, address, *, secret: str, fail_first: int = 0, redirect: bool = False) -> None:
        super().__init__(address, ReceiverHandler)
        self.secret = secret.encode()
        self.fail_first = fail_first
        self.redirect = redirect
        self.received: list[dict] = []
        self.seen: set[str] = set()


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = signature_valid(self.server.secret, self.headers, body)
        self.server.received.append(
            {"path": self.path, "headers": dict(self.headers), "event": json.loads(body or b"{}"), "valid": ok}
        )
        if not ok:
            return self.reply(401)
        if self.server.redirect:
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.end_headers()
            return None
        if self.server.fail_first > 0:
            self.server.fail_first -= 1
            return self.reply(500)
        delivery = self.headers["X-Agentbus-Delivery"]
        if delivery not in self.server.seen:  # a retry of one already handled is acknowledged only
            self.server.seen.add(delivery)
            print(f"{self.headers['X-Agentbus-Event']}: {body.decode()}", flush=True)
        return self.reply(204)

    def reply(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    server = Receiver(("127.0.0.1", args.port), secret=os.environ.get("WEBHOOK_SECRET", "change-me"))
    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
