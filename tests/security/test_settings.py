"""Production settings: `check --deploy` is clean with DEBUG off and a strong key, DEBUG
is off unless asked for, and secrets can come from files (``NAME_FILE``)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from agentbus_site.env import env_str
from tests.conftest import ROOT, database_url

# Keys tests/settings.py relaxes for the test servers; production leaves them unset.
_TEST_RELAXATIONS = (
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "DEBUG",
)


def production_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _TEST_RELAXATIONS and not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="agentbus_site.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=database_url(),
        ALLOWED_HOSTS="agentbus.example.com",
    )
    env.update(extra)
    return env


def manage(*argv: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def settings_value(name: str, env: dict) -> str:
    code = f"from django.conf import settings; print(repr(settings.{name}))"
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]  # after the shell's own banner


def test_check_deploy_passes_with_no_warning_at_all_when_debug_is_off():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


def test_debug_is_off_by_default_and_production_cookies_are_secure():
    env = production_env()
    assert settings_value("DEBUG", env) == "False"
    assert settings_value("SESSION_COOKIE_SECURE", env) == "True"
    assert settings_value("CSRF_COOKIE_SECURE", env) == "True"
    assert settings_value("SECURE_SSL_REDIRECT", env) == "True"
    assert int(settings_value("SECURE_HSTS_SECONDS", env)) >= 31_536_000


def test_without_a_secret_key_production_refuses_to_start():
    env = production_env()
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text(secrets.token_urlsafe(50) + "\n")
    redis_url = tmp_path / "redis_url"
    redis_url.write_text("redis://:s3cret@127.0.0.1:6379/5\n")
    env = production_env(SECRET_KEY_FILE=str(secret), REDIS_URL_FILE=str(redis_url))
    env["SECRET_KEY"] = "ignored-when-the-file-is-given"
    assert settings_value("SECRET_KEY", env) == repr(secret.read_text().strip())
    assert settings_value("REDIS_URL", env) == repr("redis://:s3cret@127.0.0.1:6379/5")


def test_a_secret_file_that_cannot_be_read_stops_the_process_naming_the_variable(
    tmp_path,
):
    env = production_env(SECRET_KEY_FILE=str(tmp_path / "missing"))
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY_FILE" in result.stderr


def test_env_str_prefers_the_file(monkeypatch, tmp_path):
    path = tmp_path / "token"
    path.write_text("from-file\n")
    monkeypatch.setenv("SOME_TOKEN", "from-env")
    monkeypatch.setenv("SOME_TOKEN_FILE", str(path))
    assert env_str("SOME_TOKEN") == "from-file"
    monkeypatch.setenv("SOME_TOKEN_FILE", str(tmp_path / "nope"))
    with pytest.raises(ImproperlyConfigured, match="SOME_TOKEN_FILE"):
        env_str("SOME_TOKEN")
