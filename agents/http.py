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
    reply = breaker_for(spec).call(_post, spec.url, body, headers, spec.timeout, reply_check)
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


def _post(url: str, body: bytes, headers: dict, timeout: float, reply_check: tuple[str, str] | None = None) -> dict:
    try:
        with http_span(url, headers) as record_status:  # adds traceparent to headers when tracing
            response = _http_client().post(url, content=body, headers=headers, timeout=timeout)
            record_status(response.status_code)
    except httpx.TimeoutException as exc:
        raise HttpAgentError(f"no answer from {url} within {timeout}s") from exc
    except httpx.HTTPError as exc:
        raise HttpAgentError(f"cannot reach {url}: {exc}") from exc
    text = response.text[:500]
    if reply_check is not None:
        reply_secret, nonce = reply_check
        expected = http_reply_signature(reply_secret, nonce=nonce, status=response.status_code, body=response.content)
        if not hmac.compare_digest(expected, response.headers.get(REPLY_SIGNATURE_HEADER, "")):
            # Someone between us and the agent, or a misconfigured agent: retry, never trust it.
            raise HttpAgentError(f"the reply from {url} has no valid {REPLY_SIGNATURE_HEADER}")
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
