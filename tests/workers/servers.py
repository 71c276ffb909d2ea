"""Real HTTP servers on 127.0.0.1 for the agent tests: an agent endpoint and an
OpenAI-compatible chat-completions endpoint, each answering from a script and
recording every request it got.

A script may answer with :class:`Streamed`: a real Server-Sent Events body written
event by event with pauses between them (the server records when it sent each one), as
an OpenAI-compatible server streams a completion (``chat_stream``). A plain chat
completion asked for with ``stream: true`` is streamed word by word, as a real server
would, so every LLM test goes through the streaming path."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Streamed:
    """An SSE body: each event (a dict, sent as ``data: <json>``) after ``delay`` seconds
    (``first_delay`` before the first), then ``data: [DONE]``. With ``cut_after`` the
    connection is dropped after that many events, as a server that dies mid-answer."""

    events: list
    delay: float = 0.0
    first_delay: float | None = None
    cut_after: int | None = None
    done: bool = True
    # "ndjson": one JSON object a line (application/x-ndjson) instead of SSE events.
    format: str = "sse"
    # Extra response headers; a callable gets the request's headers and the whole body.
    headers: dict | Callable[[dict, bytes], dict] = field(default_factory=dict)
    # Filled in by the server: when each event was written (time.time()), by index.
    sent_at: list[float] = field(default_factory=list)


def chat_chunk(piece: str | None = None, *, usage: dict | None = None, role: bool = False) -> dict:
    """One ``chat.completion.chunk`` of an OpenAI-compatible stream."""
    delta = {"role": "assistant", "content": ""} if role else ({"content": piece} if piece is not None else {})
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "scripted-model",
        "choices": [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": None}],
        **({"usage": usage} if usage is not None else {}),
    }


def chat_stream(pieces: list[str], *, delay: float = 0.0, first_delay: float | None = None, **options) -> Streamed:
    """A streamed completion of ``pieces``: a role chunk, one chunk per piece, the usage."""
    usage = {"prompt_tokens": 20, "completion_tokens": len(pieces), "total_tokens": 20 + len(pieces)}
    events = [chat_chunk(role=True), *(chat_chunk(p) for p in pieces), chat_chunk(usage=usage)]
    return Streamed(events, delay=delay, first_delay=first_delay, **options)


def _streamed_completion(reply: dict) -> Streamed:
    text = reply["choices"][0]["message"]["content"] if reply.get("choices") else ""
    pieces = re.findall(r"\S+\s*|\s+", text) or [""]
    events = [chat_chunk(role=True), *(chat_chunk(p) for p in pieces)]
    if reply.get("usage"):
        events.append(chat_chunk(usage=reply["usage"]))
    return Streamed(events)


class ScriptedServer:
    """Answers each POST with ``script(request_number, body) -> (status, json_body)``
    (or ``(status, Streamed)``)."""

    def __init__(self, port: int, script: Callable[[int, dict], tuple[int, object]]) -> None:
        self.script = script
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw, "body": body})
                    number = len(server.requests)
                status, reply = server.script(number, body)
                if body.get("stream") is True and isinstance(reply, dict) and reply.get("object") == "chat.completion":
                    reply = _streamed_completion(reply)
                if isinstance(reply, Streamed):
                    self._stream(status, reply)
                    return
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, status: int, reply: Streamed) -> None:
                # HTTP/1.1 chunked, as real servers stream: a cut connection is then a
                # truncated body the client notices, not an ordinary end.
                self.protocol_version = "HTTP/1.1"
                self.send_response(status)
                frames = [
                    (json.dumps(e) + "\n").encode()
                    if reply.format == "ndjson"
                    else f"data: {json.dumps(e)}\n\n".encode()
                    for e in reply.events
                ]
                if reply.done and reply.format == "sse":
                    frames.append(b"data: [DONE]\n\n")
                extra = (
                    reply.headers(dict(self.headers), b"".join(frames)) if callable(reply.headers) else reply.headers
                )
                content_type = "application/x-ndjson" if reply.format == "ndjson" else "text/event-stream"
                self.send_header("Content-Type", content_type)
                self.send_header("Cache-Control", "no-cache")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for index, frame in enumerate(frames):
                    if reply.cut_after is not None and index >= reply.cut_after:
                        self.connection.shutdown(2)  # the server "dies" mid-answer
                        return
                    pause = reply.first_delay if index == 0 and reply.first_delay is not None else reply.delay
                    if pause and index < len(reply.events):
                        time.sleep(pause)
                    self._chunk(frame)
                    if index < len(reply.events):
                        reply.sent_at.append(time.time())
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def calls(self) -> int:
        return len(self.requests)


def chat_completion(text: str, *, prompt_tokens: int = 20, completion_tokens: int = 10) -> dict:
    """The body an OpenAI-compatible server answers /v1/chat/completions with."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "scripted-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
