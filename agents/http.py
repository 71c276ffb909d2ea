"""HTTP agents: an operator-configured URL the worker POSTs each task to, signed.

The request body is JSON::

    {"task": {"id", "key", "attempt"}, "job": {"id", "requirements"},
     "input": {...}, "upstream": {key: output}, "human": {...}}

with ``X-Agentbus-Timestamp`` (unix seconds) and two signatures keyed by the agent's
secret: v1 ``X-Agentbus-Signature: sha256=HMAC("<timestamp>.<body>")``, kept for existing
receivers, and v2 ``X-Agentbus-Signature-V2`` over the method, URL, agent name
(``X-Agentbus-Agent``), timestamp, a nonce (``X-Agentbus-Nonce``) and the body, so a
receiver that remembers nonces refuses a replay and a request meant for another agent or
URL (examples/http_agent.py does). With a ``reply_secret`` the agent must sign its reply
(``X-Agentbus-Reply-Signature``, bound to the nonce); an unsigned reply is not trusted. The endpoint answers ``{"output": ...}`` (optionally
with ``"spawn": [task, ...]`` follow-up tasks), or ``{"ask": {"question", "options"?}}``
to ask a human. 5xx, 408, 429, timeouts and connection errors are retried; any other
4xx is the request's fault and fails the task without a retry. Redirects are not
followed: the worker talks only to the URL staff configured.

An agent may stream its answer: a ``text/event-stream`` body (``data: <json>`` events)
or an ``application/x-ndjson`` one (a JSON object a line), sent as it goes. Each object
is ``{"delta": "text"}`` (a piece of the task's text, passed to the job's stream at
once), ``{"event": kind, "data": ...}`` (a custom chunk), or the final answer as above
(``{"output": ...}``, ``{"ask": ...}``), which must come last. With a ``reply_secret``
the signature covers the whole body, so the chunks are passed on only once it checks
out (watchers see them at the end, never unverified).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import httpx

from agents.breakers import breaker_for
from agents.registry import AgentSpec, NonRetryableError
from core.tracing import http_span

SIGNATURE_HEADER = "X-Agentbus-Signature"
SIGNATURE_V2_HEADER = "X-Agentbus-Signature-V2"
AGENT_HEADER = "X-Agentbus-Agent"
NONCE_HEADER = "X-Agentbus-Nonce"
REPLY_SIGNATURE_HEADER = "X-Agentbus-Reply-Signature"
TIMESTAMP_HEADER = "X-Agentbus-Timestamp"
RETRYABLE_4XX = (408, 425, 429)


class HttpAgentError(Exception):
    """A failed call that another attempt may fix (5xx, timeout, connection)."""


def http_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def http_signature_valid(
    secret: str, timestamp: str, signature: str, body: bytes, *, max_age: int | None = None
) -> bool:
    """The receiver's check (for Python receivers; examples/http_agent.py shows it in
    plain stdlib): right key, untampered body, timestamp within ``max_age`` seconds
    (default AGENTBUS_HTTP_SIGNATURE_MAX_AGE)."""
    if max_age is None:
        from django.conf import settings

        max_age = settings.AGENTBUS_HTTP_SIGNATURE_MAX_AGE
    try:
        age = abs(time.time() - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= max_age and hmac.compare_digest(http_signature(secret, timestamp, body), signature or "")


def http_signature_v2(
    secret: str, *, method: str, url: str, agent: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Signature v2: the method, URL, agent name, timestamp and a nonce are under the HMAC
    beside the body, so a captured request is good for that agent at that URL once only
    (the receiver keeps the nonces it saw within the age limit)."""
    signed = f"v2\n{method.upper()}\n{url}\n{agent}\n{timestamp}\n{nonce}\n".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def http_reply_signature(secret: str, *, nonce: str, status: int, body: bytes) -> str:
    """What an agent with a reply secret sends as X-Agentbus-Reply-Signature: the HMAC of
    the request's nonce, the status and the reply body, so a reply cannot be forged nor
    replayed for another request."""
    signed = f"v2-reply\n{nonce}\n{status}\n".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def http_request_body(ctx) -> dict:
    return {
        "task": {"id": ctx.task_id, "key": ctx.task_key, "attempt": ctx.attempt},
        "job": {"id": ctx.job_id, "requirements": ctx.requirements},
        "input": ctx.input,
        "upstream": ctx.upstream,
        "human": getattr(ctx, "human", None) or {},
    }


def http_agent_run(spec: AgentSpec, ctx):
    body = json.dumps(http_request_body(ctx), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "agentbus-worker",
        TIMESTAMP_HEADER: timestamp,
        # v1 stays for receivers written against it; v2 is what examples/http_agent.py checks.
        SIGNATURE_HEADER: http_signature(spec.secret, timestamp, body),
        AGENT_HEADER: spec.name,
        NONCE_HEADER: nonce,
        SIGNATURE_V2_HEADER: http_signature_v2(
            spec.secret, method="POST", url=spec.url, agent=spec.name, timestamp=timestamp, nonce=nonce, body=body
        ),
    }
    reply_check = (spec.reply_secret, nonce) if spec.reply_secret else None
    reply = breaker_for(spec).call(_post, spec.url, body, headers, spec.timeout, reply_check, ctx)
    if "ask" in reply:
        ask = reply["ask"]
        if not isinstance(ask, dict) or not isinstance(ask.get("question"), str):
            raise NonRetryableError("the agent's 'ask' must be an object with a 'question' string")
        ask_human = getattr(ctx, "ask_human", None)
        if ask_human is None:
            raise NonRetryableError("the agent asked a human, but asking is not enabled on this server")
        answered = [a for a in (ctx.human or {}).get("answers", []) if a.get("question") == ask["question"]]
        if answered:
            # The answer was in this request's "human"; asking again would loop forever.
            raise NonRetryableError(f"the agent asked again a question already answered: {ask['question']!r}")
        ask_human(ask["question"], options=ask.get("options"))  # suspends the task (jobs.reviews)
    if "output" not in reply:
        raise NonRetryableError("the agent's response has neither 'output' nor 'ask'")
    spawn = reply.get("spawn")
    if spawn is not None:
        if not isinstance(spawn, list):
            raise NonRetryableError("the agent's 'spawn' must be a list of tasks")
        for task in spawn:
            ctx.spawn(task)
    return reply["output"]


_client: httpx.Client | None = None


def _http_client() -> httpx.Client:
    # One pooled client per process: a new one per call would build a TLS context and
    # open a new connection every time, which costs more than a fast agent's answer.
    global _client
    if _client is None:
        _client = httpx.Client(follow_redirects=False)
    return _client


STREAMED_TYPES = ("text/event-stream", "application/x-ndjson")


def _post(
    url: str, body: bytes, headers: dict, timeout: float, reply_check: tuple[str, str] | None = None, ctx=None
) -> dict:
    try:
        with http_span(url, headers) as record_status:  # adds traceparent to headers when tracing
            request = _http_client().build_request("POST", url, content=body, headers=headers, timeout=timeout)
            response = _http_client().send(request, stream=True)
            record_status(response.status_code)
            try:
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type in STREAMED_TYPES and response.status_code < 300:
                    return _streamed_reply(response, content_type, url, reply_check, ctx)
                response.read()
            finally:
                response.close()
    except httpx.TimeoutException as exc:
        raise HttpAgentError(f"no answer from {url} within {timeout}s") from exc
    except httpx.HTTPError as exc:
        raise HttpAgentError(f"cannot reach {url}: {exc}") from exc
    text = response.text[:500]
    _reply_check(response, response.content, url, reply_check)
    if response.status_code >= 500 or response.status_code in RETRYABLE_4XX:
        raise HttpAgentError(f"HTTP {response.status_code} from {url}: {text}")
    if response.status_code >= 300:
        raise NonRetryableError(f"HTTP {response.status_code} from {url}: {text}")
    try:
        reply = response.json()
    except ValueError:
        raise NonRetryableError(f"the agent's response is not JSON: {text}") from None
    if not isinstance(reply, dict):
        raise NonRetryableError("the agent's response must be a JSON object")
    return reply


def _reply_check(response, content: bytes, url: str, reply_check: tuple[str, str] | None) -> None:
    if reply_check is None:
        return
    reply_secret, nonce = reply_check
    expected = http_reply_signature(reply_secret, nonce=nonce, status=response.status_code, body=content)
    if not hmac.compare_digest(expected, response.headers.get(REPLY_SIGNATURE_HEADER, "")):
        # Someone between us and the agent, or a misconfigured agent: retry, never trust it.
        raise HttpAgentError(f"the reply from {url} has no valid {REPLY_SIGNATURE_HEADER}")


def _streamed_reply(response, content_type: str, url: str, reply_check, ctx) -> dict:
    """Read a streamed answer object by object (1. pass each chunk on as it comes, unless
    the reply must be verified first; 2. keep the final answer; 3. with a reply secret,
    check the whole body, then pass the chunks on)."""
    raw = bytearray()
    held: list[dict] = []
    final: dict | None = None
    for line in _lines(response, raw):
        if content_type == "text/event-stream":
            if not line.startswith("data:"):
                continue  # comments, event names, ids, blank separators
            line = line[5:].strip()
            if line == "[DONE]":
                break
        elif not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise NonRetryableError(f"a chunk of the agent's streamed answer is not JSON: {line[:200]}") from None
        if not isinstance(item, dict):
            raise NonRetryableError("each chunk of the agent's streamed answer must be a JSON object")
        if final is not None:
            raise NonRetryableError("the agent sent chunks after its final answer")
        if "delta" in item or "event" in item:
            if reply_check is None:
                _chunk_pass(ctx, item)
            else:
                held.append(item)
        else:
            final = item
    _reply_check(response, bytes(raw), url, reply_check)
    for item in held:
        _chunk_pass(ctx, item)
    if final is None:
        raise HttpAgentError(f"the streamed answer from {url} ended without a final answer")
    return final


def _lines(response, raw: bytearray):
    pending = b""
    for data in response.iter_bytes():
        raw.extend(data)
        pending += data
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def _chunk_pass(ctx, item: dict) -> None:
    if "delta" in item:
        if not isinstance(item["delta"], str):
            raise NonRetryableError("a streamed chunk's 'delta' must be a string")
        if ctx is not None and hasattr(ctx, "stream"):
            ctx.stream(item["delta"])
    else:
        if not isinstance(item["event"], str) or not item["event"]:
            raise NonRetryableError("a streamed chunk's 'event' must be a non-empty string")
        if ctx is not None and hasattr(ctx, "emit"):
            ctx.emit(item["event"][:100], item.get("data"))
