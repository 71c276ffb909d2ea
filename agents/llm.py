"""LLM agents, and the one module that talks to OpenAI-compatible chat endpoints.

Any chat-completions server works (OpenAI, Ollama, vLLM, llama.cpp server): an agent
sets ``base_url``/``model``/``api_key`` or inherits AGENTBUS_LLM_*. Every call goes
through ``llm_chat``, which
1. refuses to start when the job has spent its token budget, and caps the completion
   at what is left of it;
2. runs inside the agent's circuit breaker (5xx, timeouts and refused connections
   count; a 4xx is the request's fault and fails the task without a retry);
3. records the tokens the call used on the task and the job, whatever happens next.

With AGENTBUS_LLM_STREAM on (the default) the answer is asked for streamed
(``stream=True``, with the usage in the last chunk) and each piece of text goes to the
context's ``stream`` as it arrives (the job's stream, core.streams), so watchers see it
being written; the reply returned is the whole text, as without streaming. A server
that answers a streamed request with one JSON body (some ignore ``stream``) is read as
that body.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion

from agents.breakers import breaker_for
from agents.registry import AgentSpec, NonRetryableError
from core.tracing import llm_span

RETRYABLE_STATUS = (408, 409, 425, 429)


@dataclass(frozen=True)
class ChatReply:
    text: str
    model: str
    usage: dict


_clients: dict[tuple, openai.OpenAI] = {}
_clients_lock = threading.Lock()


def llm_client(*, base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    key = (base_url, api_key, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # Retries belong to the task's policy (with backoff and a circuit breaker),
            # not to the client, which would retry inside one attempt's time.
            client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=0)
            _clients[key] = client
        return client


def llm_settings(spec: AgentSpec) -> tuple[str, str, str]:
    base_url = spec.base_url or settings.AGENTBUS_LLM_BASE_URL
    if not base_url:
        raise NonRetryableError(f"agent '{spec.name}' has no base_url and AGENTBUS_LLM_BASE_URL is not set")
    return base_url, spec.model or settings.AGENTBUS_LLM_MODEL, spec.api_key or settings.AGENTBUS_LLM_API_KEY


def llm_chat(*, spec: AgentSpec, ctx, messages: list[dict], max_tokens: int | None = None) -> ChatReply:
    base_url, model, api_key = llm_settings(spec)
    remaining = ctx.tokens_remaining()
    if remaining is not None and remaining <= 0:
        raise NonRetryableError("budget: the job has used all of its max_tokens")
    limit = max_tokens or spec.max_tokens
    if remaining is not None:
        limit = min(limit, remaining) if limit else remaining
    client = llm_client(base_url=base_url, api_key=api_key, timeout=spec.timeout)
    request = {"model": model, "messages": messages}
    if limit:
        request["max_tokens"] = limit
    on_text = getattr(ctx, "stream", None) if settings.AGENTBUS_LLM_STREAM else None
    with llm_span(model=model, base_url=base_url, max_tokens=limit) as record_usage:
        if on_text is not None:
            answer = breaker_for(spec).call(_create_streamed, client, request, on_text)
        else:
            answer = _answer_of(breaker_for(spec).call(_create, client, request))
        usage = answer.usage
        counts = {
            "prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
            "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
            "total_tokens": getattr(usage, "total_tokens", 0) or 0,
        }
        record_usage(
            response_model=answer.model or model,
            input_tokens=counts["prompt_tokens"],
            output_tokens=counts["completion_tokens"],
        )
    counts["total_tokens"] = counts["total_tokens"] or counts["prompt_tokens"] + counts["completion_tokens"]
    ctx.usage_record(**counts)
    if answer.text is None:
        raise NonRetryableError("the model returned no choices")
    return ChatReply(text=answer.text, model=answer.model or model, usage=counts)


@dataclass(frozen=True)
class _Answer:
    text: str | None  # None: no choices at all
    model: str
    usage: object


def _answer_of(response) -> _Answer:
    text = (response.choices[0].message.content or "") if response.choices else None
    return _Answer(text=text, model=response.model or "", usage=response.usage)


def _create_streamed(client: openai.OpenAI, request: dict, on_text) -> _Answer:
    """The streamed call, read to its end inside the breaker (a connection lost half-way
    is a failed call, like any other); each piece of the first choice's text goes to
    ``on_text`` as it arrives."""
    stream = _create(client, {**request, "stream": True, "stream_options": {"include_usage": True}})
    with stream:
        content_type = stream.response.headers.get("content-type", "")
        if "json" in content_type:  # the server ignored stream=True
            response = ChatCompletion.model_validate(json.loads(stream.response.read()))
            answer = _answer_of(response)
            if answer.text:
                on_text(answer.text)
            return answer
        parts: list[str] = []
        model, usage, chose = "", None, False
        for chunk in stream:
            model = chunk.model or model
            usage = chunk.usage or usage
            for choice in chunk.choices or ():
                chose = True
                piece = choice.delta.content if choice.index == 0 and choice.delta else None
                if piece:
                    parts.append(piece)
                    on_text(piece)
    return _Answer(text="".join(parts) if chose or parts else None, model=model, usage=usage)


def _create(client: openai.OpenAI, request: dict):
    try:
        return client.chat.completions.create(**request)
    except openai.APIStatusError as exc:
        if exc.status_code < 500 and exc.status_code not in RETRYABLE_STATUS:
            raise NonRetryableError(
                f"the LLM endpoint refused the request: HTTP {exc.status_code} {exc.message}"
            ) from exc
        raise


def llm_agent_run(spec: AgentSpec, ctx) -> dict:
    """An LLM agent's task: the system prompt, then the requirements, the task's input
    and its upstream outputs as the user message. Returns the answer and its usage."""
    parts = []
    if ctx.requirements:
        parts.append(f"Job requirements:\n{ctx.requirements}")
    prompt = ctx.input.get("prompt") if isinstance(ctx.input.get("prompt"), str) else None
    rest = {k: v for k, v in ctx.input.items() if k != "prompt"}
    if prompt:
        parts.append(prompt)
    if rest:
        parts.append(f"Input:\n{json.dumps(rest, indent=2)}")
    if ctx.upstream:
        parts.append(f"Results of earlier tasks:\n{json.dumps(ctx.upstream, indent=2)}")
    messages = []
    if spec.system_prompt:
        messages.append({"role": "system", "content": spec.system_prompt})
    messages.append({"role": "user", "content": "\n\n".join(parts) or "(no input)"})
    reply = llm_chat(spec=spec, ctx=ctx, messages=messages)
    return {"answer": reply.text, "model": reply.model, "usage": reply.usage}
