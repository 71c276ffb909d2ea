"""Settings come from the environment, with working defaults, and a bad value fails loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "AGENTBUS_", "REDIS_URL"))}
    base.update(
        {
            "DJANGO_SETTINGS_MODULE": "agentbus_site.settings",
            "SECRET_KEY": "s" * 50,
            "AGENTBUS_VAR_DIR": "/tmp/agentbus-settings-test",
        }
    )
    base.update(env)
    code = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'], settings.DATABASES['default']['NAME'])"
    return subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_without_database_url_it_uses_sqlite_under_var():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "/tmp/agentbus-settings-test/agentbus.sqlite3"]


def test_database_url_selects_postgresql():
    result = load_settings(DATABASE_URL="postgres://u:p@db.example:5433/agentbus")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", "agentbus"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "nosuchdb://x/y"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"CHROMA_URL": "chroma"}, "CHROMA_URL"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"AGENTBUS_RETRY_BACKOFF_BASE": "fast"}, "AGENTBUS_RETRY_BACKOFF_BASE"),
        ({"AGENTBUS_MAX_PLAN_TASKS": "0"}, "AGENTBUS_MAX_PLAN_TASKS"),
        ({"THROTTLE_USER_RATE": "lots"}, "THROTTLE_USER_RATE"),
        ({"SECRET_KEY": "", "DEBUG": "0"}, "SECRET_KEY"),
    ],
)
def test_a_bad_value_stops_the_process_naming_the_variable(env, message):
    result = load_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-" + "k" * 40 + "\n")
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "agentbus_site.settings", "SECRET_KEY_FILE": str(secret)}
    env.pop("SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file-" + "k" * 40


def test_every_setting_read_from_the_environment_is_documented_in_env_example():
    import re

    settings_source = (ROOT / "agentbus_site" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', settings_source))
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read - documented == set()
