"""The agent registry: every agent the platform can route tasks to, by name.

An agent is declared once and known to every process (web validates plans against it,
the orchestrator routes by its queue, workers run it). Python agents register with the
``@agent`` decorator in a module listed in ``AGENTBUS_AGENT_MODULES`` (the built-ins in
``agents.builtin`` always load). The spec carries ``kind`` so HTTP and LLM agents,
declared in settings or by staff at run time, share the same routing and policies.

Three sources, merged by name (the first wins, and staff cannot shadow the others):
1. code: ``@agent`` functions, and the planner;
2. settings: ``AGENTBUS_AGENTS_FILE``, a JSON list of HTTP/LLM agent objects;
3. the database: ``AgentDefinition`` rows added in the admin or by ``POST /agents``.
Rows are cached per process; a version key in Redis, bumped on every change, tells
every process (web, orchestrator, workers) to re-read them, and the cache expires
after ``_DB_MAX_AGE`` seconds anyway in case a bump was lost with Redis.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from agents.errors import NonRetryableError  # noqa: F401 (agents import it from here)
from agents.kinds import AgentKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSpec:
    name: str
    kind: str  # python, http, llm or planner (agents.models.AgentKind)
    queue: str = "default"
    timeout: int = 300
    max_attempts: int = 3
    description: str = ""
    handler: Callable[..., Any] | None = None
    # Retry policy: base seconds of exponential backoff (None: AGENTBUS_RETRY_BACKOFF_BASE).
    retry_backoff: float | None = None
    # At most this many tasks of the agent run at once, over all workers (None: no limit).
    concurrency: int | None = None
    # Rate limits as LLM providers impose them, over all workers (agents.rate_limits):
    # dispatched attempts per minute, and tokens the agent's LLM calls reported per
    # minute (None: no limit).
    rate_limit_rpm: int | None = None
    rate_limit_tpm: int | None = None
    # Circuit breaker around the agent's external calls (agents.breakers).
    breaker_fail_max: int = 5
    breaker_reset_timeout: int = 30
    # HTTP agents: where the worker POSTs, and the HMAC key of the signature.
    url: str = ""
    secret: str = field(default="", repr=False)
    # If set, the agent's replies must carry a v2 reply signature under this key.
    reply_secret: str = field(default="", repr=False)
    # MCP servers and A2A agents (agents.mcp, agents.a2a): a header sent with each call,
    # and the MCP tools tasks may call.
    auth_header: str = field(default="", repr=False)
    allowed_tools: tuple[str, ...] = ()
    # LLM agents: empty values fall back to AGENTBUS_LLM_*.
    model: str = ""
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    system_prompt: str = ""
    max_tokens: int | None = None
    source: str = "code"  # code, settings or database

    def as_dict(self) -> dict:
        """The public description (GET /agents); secrets and keys are never included."""
        data = {
            "name": self.name,
            "kind": self.kind,
            "queue": self.queue,
            "timeout": self.timeout,
            "max_attempts": self.max_attempts,
            "retry_backoff": self.retry_backoff,
            "concurrency": self.concurrency,
            "rate_limit_rpm": self.rate_limit_rpm,
            "rate_limit_tpm": self.rate_limit_tpm,
            "description": self.description,
            "source": self.source,
        }
        if self.kind in (AgentKind.HTTP, AgentKind.MCP, AgentKind.A2A):
            data["url"] = self.url
        if self.kind == AgentKind.MCP:
            data["allowed_tools"] = list(self.allowed_tools)
        if self.kind in (AgentKind.LLM, AgentKind.PLANNER):
            data["model"] = self.model or settings.AGENTBUS_LLM_MODEL
        return data


_registry: dict[str, AgentSpec] = {}


def agent(
    name: str,
    *,
    queue: str = "default",
    timeout: int = 300,
    max_attempts: int = 3,
    description: str = "",
    retry_backoff: float | None = None,
    concurrency: int | None = None,
    rate_limit_rpm: int | None = None,
    rate_limit_tpm: int | None = None,
    breaker_fail_max: int = 5,
    breaker_reset_timeout: int = 30,
) -> Callable:
    """Register a Python function as an agent: ``def my_agent(ctx) -> output``."""

    for limit_name, limit in (("rate_limit_rpm", rate_limit_rpm), ("rate_limit_tpm", rate_limit_tpm)):
        # Caught at import, in AppConfig.ready: a limit of 0 would block the agent forever.
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ImproperlyConfigured(f"@agent({name!r}): {limit_name} must be an integer >= 1 or None")

    def register(func: Callable) -> Callable:
        agent_register(
            AgentSpec(
                name=name,
                kind=AgentKind.PYTHON,
                queue=queue,
                timeout=timeout,
                max_attempts=max_attempts,
                description=description or (func.__doc__ or "").strip().split("\n")[0],
                handler=func,
                retry_backoff=retry_backoff,
                concurrency=concurrency,
                rate_limit_rpm=rate_limit_rpm,
                rate_limit_tpm=rate_limit_tpm,
                breaker_fail_max=breaker_fail_max,
                breaker_reset_timeout=breaker_reset_timeout,
            )
        )
        return func

    return register


def agent_register(spec: AgentSpec) -> None:
    _registry[spec.name] = spec


def agent_get(name: str) -> AgentSpec | None:
    spec = _registry.get(name)
    if spec is None:
        spec = _db_agents().get(name)
    if spec is None and time.monotonic() - _db_cache["loaded"] > _DB_CHECK_INTERVAL:
        # A name we do not know may be one registered a moment ago whose version bump
        # we missed (Redis flushed, or lost): read the rows again before saying no.
        _db_cache["checked"] = -1e9
        _db_cache["version"] = None
        spec = _db_agents().get(name)
    return spec


def agents_all() -> list[AgentSpec]:
    merged = {**_db_agents(), **_registry}
    return sorted(merged.values(), key=lambda spec: spec.name)


def agent_defined_outside_database(name: str) -> bool:
    """True for an agent from code or settings, which a staff registration cannot shadow."""
    return name in _registry


def agents_load() -> None:
    """Import the modules that declare agents and read the settings file (idempotent;
    runs in AppConfig.ready, so every process knows the same agents)."""
    for module in ["agents.builtin", "jobs.planner", *settings.AGENTBUS_AGENT_MODULES]:
        importlib.import_module(module)
    if settings.AGENTBUS_AGENTS_FILE:
        for spec in agents_from_file(settings.AGENTBUS_AGENTS_FILE):
            if spec.name in _registry and _registry[spec.name].source != "settings":
                raise ImproperlyConfigured(f"AGENTBUS_AGENTS_FILE: agent '{spec.name}' is already defined in code")
            agent_register(spec)


# Fields an HTTP or LLM agent may set in the settings file or the database.
CONFIG_FIELDS = (
    "queue", "timeout", "max_attempts", "description", "retry_backoff", "concurrency",
    "rate_limit_rpm", "rate_limit_tpm", "breaker_fail_max", "breaker_reset_timeout", "url", "secret", "reply_secret", "model", "base_url",
    "api_key", "system_prompt", "max_tokens", "auth_header", "allowed_tools",
)  # fmt: skip


def agents_from_file(path: str) -> list[AgentSpec]:
    """Agents declared in a JSON file: ``[{"name", "kind": "http"|"llm", ...}]``.

    A secret may be given as ``"secret_env": "NAME"`` (and an API key as
    ``"api_key_env"``) so the file itself holds no secret.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            items = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"AGENTBUS_AGENTS_FILE={path!r} cannot be read as JSON: {exc}") from exc
    if not isinstance(items, list):
        raise ImproperlyConfigured("AGENTBUS_AGENTS_FILE must hold a JSON list of agent objects")
    from agents.serializers import AgentConfigSerializer

    specs = []
    for i, item in enumerate(items):
        item = dict(item) if isinstance(item, dict) else item
        if isinstance(item, dict):
            for key in ("secret", "reply_secret", "api_key", "auth_header"):
                env_name = item.pop(f"{key}_env", None)
                if env_name:
                    item[key] = os.environ.get(env_name, "")
        config = AgentConfigSerializer(data=item)
        if not config.is_valid():
            raise ImproperlyConfigured(f"AGENTBUS_AGENTS_FILE: agent [{i}] is invalid: {config.errors}")
        specs.append(agent_spec_from_config(config.validated_data, source="settings"))
    return specs


def agent_spec_from_config(data: dict, *, source: str) -> AgentSpec:
    values = {k: data[k] for k in CONFIG_FIELDS if k in data and data[k] is not None}
    text_fields = ("url", "secret", "reply_secret", "model", "base_url", "api_key", "system_prompt", "description")
    for text_field in (*text_fields, "auth_header"):
        values[text_field] = values.get(text_field) or ""
    values["allowed_tools"] = tuple(values.get("allowed_tools") or ())
    return AgentSpec(name=data["name"], kind=data["kind"], source=source, **values)


# --- agents defined in the database ------------------------------------------------------

VERSION_KEY = "agentbus:agents:version"
_DB_CHECK_INTERVAL = 0.5  # seconds between two looks at the version key
_DB_MAX_AGE = 30.0  # re-read the rows at least this often, even without a bump
_db_lock = threading.Lock()
_db_cache: dict[str, Any] = {"agents": {}, "version": None, "checked": -1e9, "loaded": -1e9}


def _db_agents() -> dict[str, AgentSpec]:
    now = time.monotonic()
    cache = _db_cache
    if now - cache["checked"] < _DB_CHECK_INTERVAL:
        return cache["agents"]
    with _db_lock:
        cache["checked"] = now
        try:
            from core.redis import redis_client

            version = redis_client().get(VERSION_KEY)
        except Exception:  # Redis down: fall back to the age limit alone
            version = None
        fresh = version is not None and version == cache["version"] and now - cache["loaded"] < _DB_MAX_AGE
        if fresh:
            return cache["agents"]
        try:
            cache["agents"] = _db_agents_read()
        except Exception as exc:  # before `migrate`, or the database is down
            logger.warning("cannot read registered agents from the database: %s", exc)
            return cache["agents"]
        cache["version"], cache["loaded"] = version, now
        return cache["agents"]


def _db_agents_read() -> dict[str, AgentSpec]:
    from agents.models import AgentDefinition

    agents = {}
    for row in AgentDefinition.objects.filter(enabled=True):
        data = {"name": row.name, "kind": row.kind, **{k: getattr(row, k) for k in CONFIG_FIELDS}}
        agents[row.name] = agent_spec_from_config(data, source="database")
    return agents


def agents_changed() -> None:
    """Tell every process to re-read the registered agents (call after a change)."""
    from core.redis import redis_client

    _db_cache["checked"] = _db_cache["loaded"] = -1e9
    try:
        redis_client().incr(VERSION_KEY)
    except Exception:
        logger.warning(
            "cannot bump the agents version in Redis; other processes see the change within %ss", _DB_MAX_AGE
        )
