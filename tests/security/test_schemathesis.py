"""A schemathesis run against the live OpenAPI schema at /schema: every check, stateful
links where the schema has them, a bounded number of examples so CI stays fast. (Every
check is on by default; schemathesis.toml beside this file turns one off for a few
operations, saying why.) It must
find no 5xx and no response that breaks the schema.

The API runs in a real daphne process (on its own port, against the test database),
called with a real user's token; the rate limit and the job quota are lifted there so
the fuzzer's volume is not what gets tested."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, client_for, make_user, process_env, wait_for
from tests.faults.servers import RedisServer

PORT = 8156
REDIS_PORT = 8157
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_api(tmp_path):
    redis = RedisServer(REDIS_PORT, tmp_path).start()
    env = process_env(
        REDIS_URL=redis.url,
        THROTTLE_USER_RATE="100000/min",
        THROTTLE_ANON_RATE="100000/min",
        AGENTBUS_MAX_ACTIVE_JOBS_PER_USER="0",
        DB_CONN_MAX_AGE="0",  # PostgreSQL's connections are shared with every other test
    )
    log = open(tmp_path / "web.log", "w")  # noqa: SIM115 (lives as long as the server)
    argv = [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(PORT),
        "agentbus_site.asgi:application",
    ]
    web = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def serving() -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(serving, timeout=60, interval=0.3, message="the web process")
        yield f"http://127.0.0.1:{PORT}", Path(log.name)
    finally:
        web.terminate()
        web.wait(10)
        redis.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_api, tmp_path):
    if shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("schemathesis is not installed (requirements-dev.txt)")
    base, web_log = live_api
    token = client_for(make_user("fuzzer"))._credentials["HTTP_AUTHORIZATION"]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
            "run", f"{base}/schema",
            "--url", base,
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES),
            "--header", f"Authorization: {token}",
            "--seed", "20261124",
            "--generation-database", "none",
            "--workers", "1",
            "--request-timeout", "20",
            "--no-color",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-20000:] + "\n--- web log ---\n" + web_log.read_text()[-5000:]
