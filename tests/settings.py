"""Settings for the test suite: the real settings, with test defaults in the environment.

Tests run against the machine's real PostgreSQL and Redis (a separate Redis database
number, flushed at the start of the session). Every default can be overridden from the
environment, as in production.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentbus")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CHROMA_URL", "http://127.0.0.1:8101")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
# Production redirects plain HTTP to HTTPS; the test servers speak plain HTTP.
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# The whole session shares one Redis, and in-process clients all come from 127.0.0.1: keep
# the API rate limits out of the way; tests/security sets its own to test them.
os.environ.setdefault("THROTTLE_USER_RATE", "100000/min")
os.environ.setdefault("THROTTLE_ANON_RATE", "100000/min")
# Every test logs in from 127.0.0.1: keep the login lock-out out of the way likewise;
# tests/security/test_login_throttle.py sets its own.
os.environ.setdefault("AGENTBUS_LOGIN_FAILURE_LIMIT", "100000")
os.environ.setdefault("AGENTBUS_MEMORY_WRITE_RATE", "100000/min")
os.environ.setdefault("AGENTBUS_AGENT_MODULES", "tests.agents,tests.hitl.agents,tests.workers.agents")
# The planner and LLM test agents run on their own queues, served by a worker that
# tests/workers starts with the scripted LLM's URL (the shared worker serves "default").
os.environ.setdefault("AGENTBUS_QUEUES", "default,planner,llm")
os.environ.setdefault("AGENTBUS_PLANNER_QUEUE", "planner")
# Fast clocks so retries, heartbeats and take-overs happen within a test's patience.
os.environ.setdefault("AGENTBUS_TASK_HEARTBEAT_TIMEOUT", "3")
os.environ.setdefault("AGENTBUS_RETRY_BACKOFF_BASE", "0.2")
os.environ.setdefault("AGENTBUS_RETRY_BACKOFF_MAX", "2")
os.environ.setdefault("AGENTBUS_LEADER_LOCK_TTL", "2")
os.environ.setdefault("AGENTBUS_RECONCILE_INTERVAL", "0.5")
os.environ.setdefault("AGENTBUS_REQUEUE_AFTER", "3")

# Webhook receivers in tests listen on 127.0.0.1, which production refuses (SSRF); the SSRF
# tests turn this off again. Retries come fast.
os.environ.setdefault("AGENTBUS_WEBHOOK_ALLOW_PRIVATE", "1")
os.environ.setdefault("AGENTBUS_WEBHOOK_BACKOFF_BASE", "0.2")
os.environ.setdefault("AGENTBUS_WEBHOOK_BACKOFF_MAX", "1")
os.environ.setdefault("AGENTBUS_WEBHOOK_TIMEOUT", "3")
# No PostgreSQL or Redis answering at those addresses (a fresh laptop, a CI step that
# hides them): start embedded ones for the session and point the URLs at them.
from core.embedded import session_services_ensure

session_services_ensure()

from agentbus_site.settings import *
