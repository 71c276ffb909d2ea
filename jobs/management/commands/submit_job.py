"""`python manage.py submit_job --plan plan.json --follow`: submit a job to a running
agentbus and follow it live, like any other API client.

It talks to the server only through its public API, so it works against any
deployment: ``POST /jobs`` with a token, then the job's websocket
(``/ws/jobs/{id}?after=N``) for live events, with a progress bar of finished tasks on
stderr, and finally ``GET /jobs/{id}/results`` printed as JSON on stdout. A dropped
socket is reopened after the last event seen; if websockets are unreachable (a proxy
that does not pass them), it polls ``GET /jobs/{id}/events?after=N`` instead.

Exit status: 0 the job succeeded (or was only submitted), 1 it failed or was
cancelled, 2 bad input (file, plan, token), 3 the server could not be reached.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

from django.core.management.base import BaseCommand, CommandError
from websockets.exceptions import InvalidStatus, WebSocketException

FINAL_JOB = ("succeeded", "failed", "cancelled")
FINAL_TASK = ("succeeded", "failed", "skipped", "cancelled")


class ApiError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(f"HTTP {status}: {body.get('detail') or body}")
        self.status = status
        self.body = body


class Api:
    """The few REST calls the command needs, over the standard library."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except ValueError:
                payload = {"detail": exc.reason}
            raise ApiError(exc.code, payload) from None

    def websocket_url(self, path: str) -> str:
        parsed = urlparse(self.base_url)
        scheme = "wss" if parsed.scheme == "https" else "ws"
        return f"{scheme}://{parsed.netloc}{parsed.path}{path}"


def body_from_file(path: str, *, requirements: str | None, priority: int | None) -> dict:
    """A plan file holds either a plan (``{"tasks": [...]}``) or a whole job body."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", returncode=2) from None
    try:
        content = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{path} is not JSON: {exc}", returncode=2) from None
    if not isinstance(content, dict) or not ("tasks" in content or "plan" in content):
        raise CommandError(
            f'{path} must be a JSON object: a plan {{"tasks": [...]}} or a job body {{"plan": ...}}', returncode=2
        )
    body = dict(content) if "plan" in content else {"plan": content}
    if requirements is not None:
        body["requirements"] = requirements
    if priority is not None:
        body["priority"] = priority
    return body


class Follower:
    """Reads a job's events from ``after`` on, by websocket or by polling, and keeps a
    progress bar of finished tasks."""

    def __init__(self, api: Api, job_id: str, *, total: int, stderr, quiet: bool) -> None:
        from tqdm import tqdm

        self.api = api
        self.job_id = job_id
        self.last_seq = 0
        self.status = "submitted"
        self.finished_tasks: set[str] = set()
        self.bar = tqdm(total=total or None, unit="task", file=stderr, disable=quiet, dynamic_ncols=True)
        self.bar.set_description(f"job {job_id[:8]} submitted")

    def apply(self, event: dict) -> None:
        if event["seq"] <= self.last_seq:
            return  # a duplicate from a reconnect
        self.last_seq = event["seq"]
        kind, status = event.get("type"), event.get("status")
        if kind == "job.status":
            self.status = status
            if event.get("tasks") and not self.bar.total:
                self.bar.total = event["tasks"]
            self.bar.set_description(f"job {self.job_id[:8]} {status}")
        elif kind == "task.status":
            key = event.get("key") or event.get("task", "?")
            if status in FINAL_TASK and key not in self.finished_tasks:
                self.finished_tasks.add(key)
                self.bar.update(1)
            self.bar.set_postfix_str(f"{key}: {status}", refresh=False)
        elif kind == "task.progress":
            progress = event.get("progress")
            label = (
                f"{event.get('key', '?')}: {progress:.0%}"
                if isinstance(progress, (int, float))
                else event.get("key", "?")
            )
            self.bar.set_postfix_str(f"{label} {event.get('message', '')}".strip(), refresh=False)
        self.bar.refresh()

    @property
    def done(self) -> bool:
        return self.status in FINAL_JOB

    def follow(self, *, deadline: float, poll_interval: float) -> None:
        """Until the job finishes: websocket first, reconnecting after the last seq;
        polling the event log when the socket cannot be opened at all."""
        failures = 0
        while not self.done and time.monotonic() < deadline:
            try:
                self._follow_socket(deadline)
                failures = 0
            except (OSError, TimeoutError, ValueError) as exc:
                failures += 1
                if failures >= 3:
                    self.bar.write(f"websocket unavailable ({type(exc).__name__}); polling the event log")
                    self._poll(deadline, poll_interval)
                    return
                time.sleep(min(2.0, 0.2 * 2**failures))
            except WebSocketException as exc:  # closed mid-stream, or a refused handshake
                if isinstance(exc, InvalidStatus) and exc.response.status_code == 403:
                    raise CommandError(
                        "the server refused the job's websocket (token or job not valid)", returncode=2
                    ) from None
                failures += 1
                time.sleep(min(2.0, 0.2 * 2**failures))
        if not self.done:
            raise CommandError(f"gave up after the timeout; job {self.job_id} is {self.status}", returncode=1)

    def _follow_socket(self, deadline: float) -> None:
        from websockets.sync.client import connect

        url = self.api.websocket_url(f"/ws/jobs/{self.job_id}?after={self.last_seq}")
        headers = {"Authorization": f"Token {self.api.token}"}
        with connect(url, additional_headers=headers, proxy=None, open_timeout=10) as socket:
            while not self.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.apply(json.loads(socket.recv(timeout=remaining)))

    def _poll(self, deadline: float, interval: float) -> None:
        while not self.done and time.monotonic() < deadline:
            page = self.api.request("GET", f"/jobs/{self.job_id}/events?after={self.last_seq}")
            for event in page["events"]:
                self.apply(event)
            if not page["events"]:
                time.sleep(interval)

    def close(self) -> None:
        self.bar.close()


class Command(BaseCommand):
    help = "Submit a job to a running agentbus (REST API) and optionally follow it live."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--plan", required=True, help='JSON file ("-" for stdin): a plan {"tasks": [...]} or a whole job body.'
        )
        parser.add_argument("--requirements", help="The job's free-text requirements (overrides the file's).")
        parser.add_argument("--priority", type=int, help="-100 to 100 (overrides the file's).")
        parser.add_argument("--follow", action="store_true", help="Follow the job live, then print its results.")
        parser.add_argument(
            "--url", default=None, help="The server's base URL (env AGENTBUS_URL, default http://127.0.0.1:8000)."
        )
        parser.add_argument(
            "--token", default=None, help="API token (env AGENTBUS_TOKEN); get one with POST /auth/token."
        )
        parser.add_argument(
            "--idempotency-key",
            default=None,
            help="Makes a retried submission return the same job (default: a new UUID).",
        )
        parser.add_argument(
            "--timeout", type=float, default=3600.0, help="Seconds to follow before giving up (default 3600)."
        )
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(self, *args, **options) -> None:
        import os

        url = options["url"] or os.environ.get("AGENTBUS_URL", "http://127.0.0.1:8000")
        token = options["token"] or os.environ.get("AGENTBUS_TOKEN", "")
        if not token:
            raise CommandError(
                "an API token is needed: --token or AGENTBUS_TOKEN (POST /auth/token gives one)", returncode=2
            )
        if urlparse(url).scheme not in ("http", "https"):
            raise CommandError(f"--url must be http(s)://..., not {url!r}", returncode=2)
        body = body_from_file(options["plan"], requirements=options["requirements"], priority=options["priority"])
        api = Api(url, token)
        # A retried submission (network blip after the server committed) must not run the
        # job twice: the same key returns the job already created.
        key = options["idempotency_key"] or str(uuid.uuid4())
        job = self._call(api.request, "POST", "/jobs", body, {"Idempotency-Key": key})
        job_id = job["id"]
        self.stderr.write(f"submitted job {job_id} ({url}/jobs/{job_id})")
        if not options["follow"]:
            self.stdout.write(json.dumps(job, indent=2))
            return

        total = len(job.get("tasks") or []) or len((body.get("plan") or {}).get("tasks") or [])
        follower = Follower(api, job_id, total=total, stderr=self.stderr._out, quiet=options["quiet"])
        try:
            follower.follow(deadline=time.monotonic() + options["timeout"], poll_interval=1.0)
        finally:
            follower.close()
        results = self._call(api.request, "GET", f"/jobs/{job_id}/results")
        self.stdout.write(json.dumps(results, indent=2))
        if results.get("status") != "succeeded":
            raise CommandError(f"job {job_id} {results.get('status')}: {results.get('error', '')}", returncode=1)

    def _call(self, method, *args):
        try:
            return method(*args)
        except ApiError as exc:
            fields = exc.body.get("fields") or {}
            where = "".join(f"\n  {path}: {'; '.join(problems)}" for path, problems in fields.items())
            raise CommandError(f"{exc}{where}", returncode=2 if exc.status < 500 else 3) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CommandError(f"cannot reach the server: {exc}", returncode=3) from None
