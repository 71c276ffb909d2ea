"""agentbus settings: one module, every knob from the environment (see .env.example).

Defaults run the whole product on a laptop: SQLite under var/, Redis on localhost,
a Chroma server on 127.0.0.1:8100. Production sets DATABASE_URL, REDIS_URL,
CHROMA_URL, SECRET_KEY and DEBUG=0.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from agentbus_site.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("AGENTBUS_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # Only for DEBUG on a laptop (`make run` sets DEBUG=1); never used in production.
    SECRET_KEY = "insecure-dev-key-" + "x" * 40
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_rq",
    "channels",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the app (no CDN)
    "django_prometheus",  # request/response metrics of the web process at /metrics
    "csp",  # Content-Security-Policy on every response (CONTENT_SECURITY_POLICY below)
    "axes",  # login lock-out on every login path (accounts/lockout.py)
    "accounts",
    "agents",
    "jobs",
    "memory",
    "orchestration",
    "workers",
    "schedules",  # jobs on a cron or an interval (schedules/)
    "webhooks",  # signed event deliveries to users' URLs (webhooks/)
    "retention",  # purging finished jobs and expired memories (retention/)
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # first: times the whole request
    "core.tracing.TracingMiddleware",  # a span per request when OTEL_EXPORTER_OTLP_ENDPOINT is set; else removed
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a lock-out into its 429 (accounts/lockout.py)
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # last but one: times the view
    # Serves static/ (CSS, JS, admin assets) from the web process itself. Last, and
    # sync-only: under ASGI, Django then runs the whole chain in one thread, entered once
    # per request. Anywhere else, the async-capable middleware below it ran in async mode,
    # each of their process_request/process_response hopping into a thread of its own
    # (more than a dozen hops per request; in-process, GET /healthz 3.4 ms, now 1.6).
    "whitenoise.middleware.WhiteNoiseMiddleware",
]

ROOT_URLCONF = "agentbus_site.urls"
ASGI_APPLICATION = "agentbus_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 600))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from exc
    if not _db.get("ENGINE"):
        raise ImproperlyConfigured("DATABASE_URL names an unknown database engine")
    _db["CONN_HEALTH_CHECKS"] = True
    # Under ASGI each request runs in a thread of its own, so a per-thread persistent
    # connection was a new PostgreSQL connection per request (~10 ms, measured). A
    # psycopg pool (Django 5.1+) hands each request a warm one; it replaces
    # CONN_MAX_AGE, which must then be 0. DB_POOL_MAX_SIZE=0 turns it off.
    _pool_size = env_int("DB_POOL_MAX_SIZE", 10, minimum=0)
    if _pool_size and _db["ENGINE"] == "django.db.backends.postgresql":
        _db["CONN_MAX_AGE"] = 0
        _db["CONN_HEALTH_CHECKS"] = False
        _db.setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": _pool_size, "timeout": 30}
    # Parameters bound by the server, and statements prepared on their 5th use: each of the
    # per-task path's few statements is then parsed and planned once per connection, and
    # psycopg no longer quotes values into the SQL text (bench/pipeline.py). Django turns
    # both off by default for poolers in transaction mode (PgBouncer before 1.21, or
    # without max_prepared_statements): set DB_PREPARED_STATEMENTS=0 behind one.
    if env_bool("DB_PREPARED_STATEMENTS", True) and _db["ENGINE"] == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "agentbus.sqlite3",
        # Web, orchestrator and workers write concurrently: WAL lets readers go on while
        # one writes, IMMEDIATE takes the write lock up front so no transaction fails
        # half-way on an upgrade, and the timeout waits for the lock instead of erroring.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, RQ, channels ----------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
AGENTBUS_QUEUES = env_list("AGENTBUS_QUEUES", ["default"])

# django-rq reads its queues from here (the rqworker command, its admin dashboard).
# Every queue uses JSON; core.queue enforces the job class and signature.
RQ_QUEUES = {name: {"URL": REDIS_URL, "SERIALIZER": "rq.serializers.JSONSerializer"} for name in AGENTBUS_QUEUES}
RQ = {
    "WORKER_CLASS": "workers.worker.AgentWorker",
    "JOB_CLASS": "core.queue.SignedJob",
}

# The websocket fan-out. "pubsub": one Redis PUBLISH per group message, and each web
# process hands it to all its local sockets in memory, so 50 watchers of a job cost what
# one does in Redis (bench/live.py). "lists": channels_redis' list-based layer, one
# Redis entry per socket. Both are at-most-once; the job event log is the truth.
AGENTBUS_CHANNEL_LAYER = env_str("AGENTBUS_CHANNEL_LAYER", "pubsub").strip().lower()
if AGENTBUS_CHANNEL_LAYER not in ("pubsub", "lists"):
    raise ImproperlyConfigured(f"AGENTBUS_CHANNEL_LAYER={AGENTBUS_CHANNEL_LAYER!r} must be pubsub or lists")
# Redis pub/sub channels ignore the database number, so two deployments (or test runs)
# on one Redis server with different databases would hear each other's group messages:
# the prefix carries the database number unless set explicitly.
AGENTBUS_CHANNEL_PREFIX = env_str(
    "AGENTBUS_CHANNEL_PREFIX", f"agentbus:db{(urlparse(REDIS_URL).path.strip('/') or '0')}:channels"
)
CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": AGENTBUS_CHANNEL_PREFIX},
        }
        if AGENTBUS_CHANNEL_LAYER == "pubsub"
        else {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "agentbus:channels", "capacity": 1000, "expiry": 30},
        }
    )
}

# A job's websocket compares its last sent event with the log this often (seconds), so an
# event the channel layer dropped reaches the client even when no later event reveals it.
AGENTBUS_WS_RESYNC_INTERVAL = env_float("AGENTBUS_WS_RESYNC_INTERVAL", 5.0, minimum=0.1)

# Streams of what agents say while they say it (core/streams.py): a Redis Stream per job,
# kept this many seconds after its last chunk (the window a dropped client may resume in,
# LangGraph's default) and trimmed to about this many entries.
AGENTBUS_STREAM_RESUME_SECONDS = env_int("AGENTBUS_STREAM_RESUME_SECONDS", 120, minimum=1)
AGENTBUS_STREAM_MAXLEN = env_int("AGENTBUS_STREAM_MAXLEN", 10_000, minimum=100)
# An idle GET /jobs/{id}/stream sends a keep-alive comment and looks at the job this often (s).
AGENTBUS_STREAM_IDLE_SECONDS = env_float("AGENTBUS_STREAM_IDLE_SECONDS", 5.0, minimum=0.1)

CHROMA_URL = env_url("CHROMA_URL", "http://127.0.0.1:8100", schemes=("http", "https"))

# --- memory (memory/) --------------------------------------------------------------------
# Embeddings: Chroma's default model in-process unless an OpenAI-compatible endpoint is set.
AGENTBUS_EMBEDDINGS_URL = env_str("AGENTBUS_EMBEDDINGS_URL", "")
AGENTBUS_EMBEDDINGS_MODEL = env_str("AGENTBUS_EMBEDDINGS_MODEL", "text-embedding-3-small")
AGENTBUS_EMBEDDINGS_API_KEY = env_str("AGENTBUS_EMBEDDINGS_API_KEY", "")
AGENTBUS_EMBEDDINGS_TIMEOUT = env_float("AGENTBUS_EMBEDDINGS_TIMEOUT", 30.0, minimum=0.1)
# One collection per embedding model: vectors of different models must never mix.
AGENTBUS_MEMORY_COLLECTION = env_str(
    "AGENTBUS_MEMORY_COLLECTION",
    "agentbus-memory-"
    + (
        "".join(c if c.isalnum() else "-" for c in AGENTBUS_EMBEDDINGS_MODEL).strip("-")
        if AGENTBUS_EMBEDDINGS_URL
        else "minilm-l6-v2"
    ),
)
AGENTBUS_MEMORY_MAX_TEXT_CHARS = env_int("AGENTBUS_MEMORY_MAX_TEXT_CHARS", 20_000, minimum=1)
AGENTBUS_MEMORY_MAX_BATCH = env_int("AGENTBUS_MEMORY_MAX_BATCH", 500, minimum=1)

# --- auth, REST -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "app-jobs"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser, also refusing NUL and unpaired surrogates (PostgreSQL cannot store them).
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("THROTTLE_USER_RATE", "6000/min"),
        "anon": env_rate("THROTTLE_ANON_RATE", "600/min"),
    },
    # Counted atomically in Redis, so the limits hold across web replicas.
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.UserRateThrottle",
        "core.throttling.AnonRateThrottle",
    ],
    # Trusted proxies in front of the web processes that append to X-Forwarded-For; with
    # 0 the client IP is REMOTE_ADDR, so a client cannot choose its own by that header.
    "NUM_PROXIES": env_int("AGENTBUS_NUM_PROXIES", 0, minimum=0),
    # OPTIONS answers 405 like any other method a view lacks: DRF's metadata introspects
    # a view's serializer_class, which our views do not have (it was a 500).
    "DEFAULT_METADATA_CLASS": None,
}

# OpenAPI at /schema, Swagger UI at /docs (openapi.py), assets served locally.
SPECTACULAR_SETTINGS = {
    "TITLE": "agentbus API",
    "DESCRIPTION": (
        "Submit AI-agent jobs, follow them live, review their tasks and read their results.\n\n"
        "Authenticate with `Authorization: Token <key>` (from `POST /auth/token`) or a browser "
        'session. Every 4xx answers `{"error", "detail", "fields"?}`; another user\'s '
        "object is a 404.\n\n"
        "Live events: `ws(s)://<host>/ws/jobs/{id}?after=N` streams a job's events (the objects "
        "of `GET /jobs/{id}/events`), one JSON object per message, resuming after `seq` N; "
        "`/ws/jobs` streams status changes of the caller's jobs."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.paths_as_documented",
        "core.openapi_errors.error_responses_everywhere",
    ],
}

# --- request limits ---------------------------------------------------------------------
# A job body is JSON; 1 MiB holds a plan of hundreds of tasks with generous inputs.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("AGENTBUS_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
AGENTBUS_MAX_PLAN_TASKS = env_int("AGENTBUS_MAX_PLAN_TASKS", 200, minimum=1)
AGENTBUS_MAX_REQUIREMENTS_CHARS = env_int("AGENTBUS_MAX_REQUIREMENTS_CHARS", 20_000, minimum=1)
AGENTBUS_MAX_TASK_ATTEMPTS = env_int("AGENTBUS_MAX_TASK_ATTEMPTS", 20, minimum=1)
AGENTBUS_MAX_TASK_TIMEOUT = env_int("AGENTBUS_MAX_TASK_TIMEOUT", 24 * 3600, minimum=1)
# Unfinished jobs one user may have at once (0 = no limit); POST /jobs answers 429 beyond.
AGENTBUS_MAX_ACTIVE_JOBS_PER_USER = env_int("AGENTBUS_MAX_ACTIVE_JOBS_PER_USER", 100, minimum=0)

# --- orchestration and workers ----------------------------------------------------------
# Modules imported at start-up so their @agent decorators register (besides built-ins).
AGENTBUS_AGENT_MODULES = env_list("AGENTBUS_AGENT_MODULES", [])
# Signs every queue message (HMAC-SHA256); defaults to a key derived from SECRET_KEY.
AGENTBUS_QUEUE_SIGNING_KEY = env_str("AGENTBUS_QUEUE_SIGNING_KEY", "")
AGENTBUS_TASK_HEARTBEAT_TIMEOUT = env_float("AGENTBUS_TASK_HEARTBEAT_TIMEOUT", 30.0, minimum=1.0)
AGENTBUS_RETRY_BACKOFF_BASE = env_float("AGENTBUS_RETRY_BACKOFF_BASE", 2.0, minimum=0.0)
AGENTBUS_RETRY_BACKOFF_MAX = env_float("AGENTBUS_RETRY_BACKOFF_MAX", 300.0, minimum=0.0)
AGENTBUS_LEADER_LOCK_TTL = env_float("AGENTBUS_LEADER_LOCK_TTL", 5.0, minimum=0.5)
# The sliding window of the per-agent rate limits (agents.rate_limits): rate_limit_rpm
# and rate_limit_tpm count over this many seconds. 60 is what "per minute" means; tests
# shorten it.
AGENTBUS_RATE_WINDOW_SECONDS = env_float("AGENTBUS_RATE_WINDOW_SECONDS", 60.0, minimum=0.1)
# How often an idle orchestrator re-reads PostgreSQL for work whose message was lost.
AGENTBUS_RECONCILE_INTERVAL = env_float("AGENTBUS_RECONCILE_INTERVAL", 1.0, minimum=0.05)
# A task queued this long without a worker starting it is sent again (lost message).
AGENTBUS_REQUEUE_AFTER = env_float("AGENTBUS_REQUEUE_AFTER", 60.0, minimum=1.0)
# A worker whose task's success makes a dependent ready on its own queue runs it next
# itself, without the round trip through Redis (jobs.lifecycle.task_succeed).
AGENTBUS_EAGER_HANDOFF = env_bool("AGENTBUS_EAGER_HANDOFF", True)

# --- who runs first (jobs/scheduling.py) ---------------------------------------------------
# Off: every ready task is sent to its queue at once, first in first out (no priority,
# fair shares or concurrency keys); for comparison in bench/pipeline.py --no-scheduling.
AGENTBUS_SCHEDULING = env_bool("AGENTBUS_SCHEDULING", True)
# Tasks a queue holds in flight (sent or running) beyond one per live worker on it. 0: a
# worker that frees up admits its next task itself, so a late priority waits behind
# nothing; more lets workers start without waiting for an admission (very short tasks).
AGENTBUS_QUEUE_PREFETCH = env_int("AGENTBUS_QUEUE_PREFETCH", 0, minimum=0)
# Fair shares compare what each user (or concurrency key) was sent over this many seconds.
AGENTBUS_FAIR_WINDOW = env_float("AGENTBUS_FAIR_WINDOW", 60.0, minimum=1.0)
# One slot in this many goes to the task that has waited longest, whatever its priority
# or owner, so no band waits for ever (aging). 0: strict priority.
AGENTBUS_OLDEST_SHARE = env_int("AGENTBUS_OLDEST_SHARE", 10, minimum=0)

# --- human in the loop (jobs/reviews.py) ---------------------------------------------------
# Deadline (seconds) of a review gate whose plan task names none; 0: no deadline.
AGENTBUS_REVIEW_DEADLINE = env_int("AGENTBUS_REVIEW_DEADLINE", 0, minimum=0)
# A "review.reminder" event goes out this long before a gate's deadline (or half-way).
AGENTBUS_REVIEW_REMIND_BEFORE = env_int("AGENTBUS_REVIEW_REMIND_BEFORE", 3600, minimum=1)
# Rejections of a task's output that run it again; the next one fails the task.
AGENTBUS_REVIEW_MAX_REJECTIONS = env_int("AGENTBUS_REVIEW_MAX_REJECTIONS", 3, minimum=0)

# --- agents (agents.registry) and the planner --------------------------------------------
# A JSON list of HTTP/LLM agents declared by the operator (see examples/agents.json).
AGENTBUS_AGENTS_FILE = env_str("AGENTBUS_AGENTS_FILE", "")
# The default OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp server) of LLM
# agents and of the planner. Unset: no planner, so POST /jobs needs an explicit plan.
AGENTBUS_LLM_BASE_URL = (
    env_url("AGENTBUS_LLM_BASE_URL", "", schemes=("http", "https")) if env_str("AGENTBUS_LLM_BASE_URL").strip() else ""
)
AGENTBUS_LLM_MODEL = env_str("AGENTBUS_LLM_MODEL", "gpt-4o-mini")
AGENTBUS_LLM_API_KEY = env_str("AGENTBUS_LLM_API_KEY", "")
# LLM agents ask for a streamed answer (stream=True) and pass its chunks to the job's stream.
AGENTBUS_LLM_STREAM = env_bool("AGENTBUS_LLM_STREAM", True)
# The queue the planner's task goes to; the standard worker serves "default".
AGENTBUS_PLANNER_QUEUE = env_str("AGENTBUS_PLANNER_QUEUE", "default")
# How many times the planner asks the LLM (the first try plus corrections).
AGENTBUS_PLANNER_TRIES = env_int("AGENTBUS_PLANNER_TRIES", 3, minimum=1)
# Largest file one ctx.artifact() call may store.
AGENTBUS_MAX_ARTIFACT_BYTES = env_int("AGENTBUS_MAX_ARTIFACT_BYTES", 50 * 1024 * 1024, minimum=1)
# A signed HTTP agent request older than this is refused by the receiver (replay).
AGENTBUS_HTTP_SIGNATURE_MAX_AGE = env_int("AGENTBUS_HTTP_SIGNATURE_MAX_AGE", 300, minimum=1)

# --- schedules, webhooks, retention (schedules/, webhooks/, retention/) ---------------------
# A schedule's tick due longer ago than this is "missed" (the orchestrator was down), and its
# catch-up policy decides whether it still runs.
AGENTBUS_SCHEDULE_LATE_AFTER = env_float("AGENTBUS_SCHEDULE_LATE_AFTER", 60.0, minimum=0.1)
# Webhook URLs that resolve to loopback, private, link-local, multicast or reserved addresses
# are refused (SSRF) unless this is on (a private network's receivers; the tests).
AGENTBUS_WEBHOOK_ALLOW_PRIVATE = env_bool("AGENTBUS_WEBHOOK_ALLOW_PRIVATE", False)
AGENTBUS_WEBHOOK_TIMEOUT = env_float("AGENTBUS_WEBHOOK_TIMEOUT", 10.0, minimum=0.1)
AGENTBUS_WEBHOOK_MAX_ATTEMPTS = env_int("AGENTBUS_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
AGENTBUS_WEBHOOK_BACKOFF_BASE = env_float("AGENTBUS_WEBHOOK_BACKOFF_BASE", 10.0, minimum=0.0)
AGENTBUS_WEBHOOK_BACKOFF_MAX = env_float("AGENTBUS_WEBHOOK_BACKOFF_MAX", 3600.0, minimum=0.0)
# Deliveries sent at once by the orchestrator's sender threads.
AGENTBUS_WEBHOOK_CONCURRENCY = env_int("AGENTBUS_WEBHOOK_CONCURRENCY", 4, minimum=1)
# The event cursor stays this many seconds behind the newest event, so an event whose
# transaction commits late (after a newer one) is still seen (webhooks/outbox.py).
AGENTBUS_WEBHOOK_SETTLE = env_float("AGENTBUS_WEBHOOK_SETTLE", 10.0, minimum=0.0)
# Finished jobs' events, outputs and artifacts are purged this many days after they finished
# (0: kept for ever); a user's own setting (admin: Retention policies) overrides it.
AGENTBUS_RETENTION_DAYS = env_float("AGENTBUS_RETENTION_DAYS", 0.0, minimum=0.0)
# Write each job to Django storage (retention/<date>/<job id>.json) before purging it.
AGENTBUS_RETENTION_ARCHIVE = env_bool("AGENTBUS_RETENTION_ARCHIVE", False)
# Jobs purged per transaction: small, so no lock is held for long.
AGENTBUS_RETENTION_BATCH = env_int("AGENTBUS_RETENTION_BATCH", 50, minimum=1)
# How often the orchestrator's retention step runs (seconds), and its time budget per run.
AGENTBUS_RETENTION_INTERVAL = env_float("AGENTBUS_RETENTION_INTERVAL", 60.0, minimum=0.1)
AGENTBUS_RETENTION_STEP_SECONDS = env_float("AGENTBUS_RETENTION_STEP_SECONDS", 0.5, minimum=0.01)

# --- static, media, i18n ----------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves from STATIC_ROOT after `collectstatic`; reading the apps' static
# folders directly as well means a deployment that skips that step still has its assets.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
# Until `collectstatic` has run, STATIC_ROOT does not exist and WhiteNoise says so once
# per process; the finders above serve the same files, so that warning is only noise.
warnings.filterwarnings("ignore", message="No directory at", module="whitenoise")
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- production hardening ---------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# Plain HTTP is redirected to HTTPS (behind a TLS proxy: X-Forwarded-Proto, above), except
# the probes a load balancer or Kubernetes sends over plain HTTP inside the network.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$", r"^metrics/?$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG

# One JSON object per line with job and task ids (logging.py), or plain lines.
LOG_FORMAT = env_str("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be json or plain")
# Orchestrator and workers serve their own Prometheus metrics on this port (unset: off);
# the web process serves them at /metrics, behind AGENTBUS_METRICS_TOKEN when it is set.
AGENTBUS_METRICS_PORT = env_int("AGENTBUS_METRICS_PORT", 0, minimum=0) or None
AGENTBUS_METRICS_TOKEN = env_str("AGENTBUS_METRICS_TOKEN", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "core.logging.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "rq.worker": {"level": env_str("RQ_LOG_LEVEL", "WARNING")},
        # Chroma's client logs every HTTP request it makes at INFO: one line per search.
        "httpx": {"level": env_str("HTTPX_LOG_LEVEL", "WARNING")},
        # django-axes logs every login at INFO; its warnings (failures, lock-outs) stay.
        "axes": {"level": env_str("AXES_LOG_LEVEL", "WARNING")},
    },
}

# --- hardening (docs/readme/security.md) ---------------------------------------------------
# The JSON policy (core/json_policy.py): nesting depth of any body or JSON query value.
AGENTBUS_JSON_MAX_DEPTH = env_int("AGENTBUS_JSON_MAX_DEPTH", 64, minimum=2)
# Tokens: live ones per user; websockets re-check credentials and access this often (s).
AGENTBUS_MAX_TOKENS_PER_USER = env_int("AGENTBUS_MAX_TOKENS_PER_USER", 100, minimum=1)
AGENTBUS_WS_RECHECK_INTERVAL = env_float("AGENTBUS_WS_RECHECK_INTERVAL", 30.0, minimum=0.1)
# Login lock-out (django-axes, accounts/lockout.py): failures per username and per client.
AUTHENTICATION_BACKENDS = ["accounts.lockout.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AGENTBUS_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("AGENTBUS_LOGIN_COOLOFF", 900, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failures are kept; a row per successful login is not needed
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
AXES_VERBOSE = False
# Content-Security-Policy (django-csp) on every page: scripts only from this site or with
# the response's nonce (templates: nonce="{{ request.csp_nonce }}"), no inline handlers,
# no framing, no plugins. Inline style attributes stay allowed (the dashboard's SVG uses them).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Channel-layer messages are signed (core/live_signing.py); default: from SECRET_KEY.
AGENTBUS_LIVE_SIGNING_KEY = env_str("AGENTBUS_LIVE_SIGNING_KEY", "")
# A signed live message older than this (seconds) is a replay and dropped.
AGENTBUS_LIVE_MAX_AGE = env_float("AGENTBUS_LIVE_MAX_AGE", 120.0, minimum=1.0)
# Bounds on memory writes (memory/bounds.py).
AGENTBUS_MEMORY_MAX_REQUEST_CHARS = env_int("AGENTBUS_MEMORY_MAX_REQUEST_CHARS", 100_000, minimum=1)
AGENTBUS_MEMORY_MAX_PER_USER = env_int("AGENTBUS_MEMORY_MAX_PER_USER", 100_000, minimum=1)
AGENTBUS_MEMORY_WRITE_RATE = env_rate("AGENTBUS_MEMORY_WRITE_RATE", "120/min")
# Open websockets per user (across replicas, counted in Redis) and frames queued per socket
# before a reader too slow to keep up is dropped (close 4408); agentbus_site/ws_guard.py.
AGENTBUS_WS_MAX_PER_USER = env_int("AGENTBUS_WS_MAX_PER_USER", 20, minimum=1)
AGENTBUS_WS_SEND_QUEUE = env_int("AGENTBUS_WS_SEND_QUEUE", 1000, minimum=1)
# A review claim older than this (seconds) no longer binds others; 0: never (jobs/review_claims.py).
AGENTBUS_REVIEW_CLAIM_TTL = env_int("AGENTBUS_REVIEW_CLAIM_TTL", 3600, minimum=0)
