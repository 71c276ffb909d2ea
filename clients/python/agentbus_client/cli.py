"""The ``agentbus`` command: submit and follow jobs, read results, cancel, decide
reviews and use memory, against a running server's public API.

Configuration: ``--url`` / ``--token``, or AGENTBUS_URL / AGENTBUS_TOKEN. Answers are
JSON on stdout; progress and messages go to stderr.

Exit status: 0 done (a followed job succeeded), 1 a followed job failed or was
cancelled, 2 bad input or refused by the server (4xx), 3 the server could not be
reached or failed (5xx).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentbus_client._requests import TASK_FINISHED
from agentbus_client.client import Client
from agentbus_client.errors import ApiError, TransportError

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} is not JSON: {exc}") from None


def _read_plan(path: str) -> dict:
    """A plan file holds a plan (``{"tasks": [...]}``) or a whole job body (``{"plan": ...}``)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    content = _json_arg(text, path)
    if not isinstance(content, dict) or not ("tasks" in content or "plan" in content):
        raise CliError(f'{path} must be a JSON object: a plan {{"tasks": [...]}} or a job body {{"plan": ...}}')
    return dict(content) if "plan" in content else {"plan": content}


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


class Progress:
    """A tqdm bar of finished tasks, with the latest task state as its postfix."""

    def __init__(self, job_id: str, total: int, *, quiet: bool) -> None:
        from tqdm import tqdm

        self.job_id = job_id
        self.finished: set[str] = set()
        self.states: dict[str, str] = {}
        self.bar = tqdm(total=total or None, unit="task", file=sys.stderr, disable=quiet, dynamic_ncols=True)
        self.bar.set_description(f"job {job_id[:8]} submitted")

    def apply(self, event: dict) -> None:
        kind, status = event.get("type"), event.get("status")
        if kind == "job.status":
            if event.get("tasks") and not self.bar.total:
                self.bar.total = event["tasks"]
            self.bar.set_description(f"job {self.job_id[:8]} {status}")
        elif kind == "task.status":
            key = str(event.get("key") or event.get("task") or "?")
            self.states[key] = str(status)
            if status in TASK_FINISHED and key not in self.finished:
                self.finished.add(key)
                self.bar.update(1)
            live = ", ".join(f"{k}: {s}" for k, s in self.states.items() if s not in TASK_FINISHED)
            self.bar.set_postfix_str(live or f"{key}: {status}", refresh=False)
        elif kind == "task.progress":
            progress = event.get("progress")
            label = f"{event.get('key', '?')}: {progress:.0%}" if isinstance(progress, (int, float)) else ""
            self.bar.set_postfix_str(f"{label} {event.get('message', '')}".strip(), refresh=False)
        self.bar.refresh()

    def note(self, text: str) -> None:
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def follow(client: Client, job_id: str, *, total: int, quiet: bool, timeout: float | None) -> dict:
    progress = Progress(job_id, total, quiet=quiet)
    try:
        for event in client.follow(
            job_id,
            timeout=timeout,
            on_reconnect=lambda n, exc: progress.note(f"connection lost ({type(exc).__name__}); resuming"),
        ):
            progress.apply(event)
    except TimeoutError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    finally:
        progress.close()
    results = client.results(job_id)
    _print(results)
    if results.get("status") != "succeeded":
        raise CliError(f"job {job_id} {results.get('status')}: {results.get('error', '')}", EXIT_FAILED)
    return results


def cmd_submit(client: Client, args: argparse.Namespace) -> None:
    if args.plan is None and args.requirements is None:
        raise CliError("give --plan FILE, --requirements TEXT, or both")
    body = _read_plan(args.plan) if args.plan else {}
    if args.requirements is not None:
        body["requirements"] = args.requirements
    if args.priority is not None:
        body["priority"] = args.priority
    if args.review_plan:
        body["review_plan"] = True
    options = {k: body[k] for k in ("review_plan", "priority", "metadata", "remember", "budget") if k in body}
    job = client.submit(
        plan=body.get("plan"),
        requirements=body.get("requirements"),
        idempotency_key=args.idempotency_key,
        **options,
    )
    sys.stderr.write(f"submitted job {job['id']}\n")
    if not args.follow:
        _print(job)
        return
    total = len(job.get("tasks") or []) or len((body.get("plan") or {}).get("tasks") or [])
    follow(client, job["id"], total=total, quiet=args.quiet, timeout=args.timeout)


def cmd_follow(client: Client, args: argparse.Namespace) -> None:
    job = client.job(args.job)
    follow(client, job["id"], total=len(job.get("tasks") or []), quiet=args.quiet, timeout=args.timeout)


def cmd_status(client: Client, args: argparse.Namespace) -> None:
    _print(client.job(args.job))


def cmd_results(client: Client, args: argparse.Namespace) -> None:
    _print(client.results(args.job))


def cmd_cancel(client: Client, args: argparse.Namespace) -> None:
    _print(client.cancel(args.job))


def cmd_reviews_list(client: Client, args: argparse.Namespace) -> None:
    page = client.reviews(status=None if args.status == "all" else args.status, job=args.job)
    if args.json:
        _print(page)
        return
    for review in page["results"]:
        where = review.get("task_key") or "plan"
        sys.stdout.write(
            f"{review['id']}  {review['kind']:<8} {review['status']:<8} job {review['job'][:8]}  {where}\n"
        )


def cmd_reviews_show(client: Client, args: argparse.Namespace) -> None:
    _print(client.review(args.review))


def cmd_reviews_decide(client: Client, args: argparse.Namespace) -> None:
    values: dict[str, Any] = {}
    if args.comment is not None:
        values["comment"] = args.comment
    for name in ("output", "input", "plan", "answer"):
        raw = getattr(args, name)
        if raw is not None:
            # An answer may be plain text; everything else is JSON.
            values[name] = _json_or_text(raw) if name == "answer" else _json_arg(raw, f"--{name}")
    _print(client.decide(args.review, args.decision, **values))


def cmd_reviews_claim(client: Client, args: argparse.Namespace) -> None:
    _print(client.claim(args.review))


def cmd_memory_store(client: Client, args: argparse.Namespace) -> None:
    metadata = _json_arg(args.metadata, "--metadata") if args.metadata else None
    _print(client.memory_store(args.text, namespace=args.namespace, metadata=metadata, ttl=args.ttl))


def cmd_memory_search(client: Client, args: argparse.Namespace) -> None:
    metadata = dict(item.split("=", 1) for item in args.where or [])
    _print(client.memory_search(args.query, k=args.k, namespace=args.namespace, mode=args.mode, metadata=metadata))


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="agentbus", description="Submit, follow and review agentbus jobs.")
    top.add_argument("--url", help="server base URL (env AGENTBUS_URL, default http://127.0.0.1:8000)")
    top.add_argument("--token", help="API token (env AGENTBUS_TOKEN; POST /auth/token gives one)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def job_follow_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--timeout", type=float, default=None, help="seconds to follow before giving up")

    submit = commands.add_parser("submit", help="submit a job (a plan file, requirements, or both)")
    submit.add_argument("--plan", help='JSON file ("-" for stdin): a plan {"tasks": [...]} or a job body')
    submit.add_argument("--requirements", help="the job's free-text requirements")
    submit.add_argument("--priority", type=int, help="-100 to 100")
    submit.add_argument("--review-plan", action="store_true", help="hold the plan for a human's review")
    submit.add_argument("--idempotency-key", help="makes a retried submission return the same job")
    submit.add_argument("--follow", action="store_true", help="follow the job live, then print its results")
    job_follow_options(submit)
    submit.set_defaults(run=cmd_submit)

    for name, run, text in (
        ("status", cmd_status, "a job with its tasks"),
        ("results", cmd_results, "a finished job's results"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("job", help="job id")
        command.set_defaults(run=run)
    follow_cmd = commands.add_parser("follow", help="follow a job live, then print its results")
    follow_cmd.add_argument("job", help="job id")
    job_follow_options(follow_cmd)
    follow_cmd.set_defaults(run=cmd_follow)

    reviews = commands.add_parser("reviews", help="review gates: list, show, decide, claim")
    review_commands = reviews.add_subparsers(dest="reviews_command", required=True, metavar="ACTION")
    listing = review_commands.add_parser("list", help="reviews you may decide")
    listing.add_argument("--status", default="pending", help="pending (default), decided, closed or all")
    listing.add_argument("--job", help="only this job's reviews")
    listing.add_argument("--json", action="store_true", help="the API's JSON page")
    listing.set_defaults(run=cmd_reviews_list)
    show = review_commands.add_parser("show", help="a review with its history")
    show.add_argument("review")
    show.set_defaults(run=cmd_reviews_show)
    decide = review_commands.add_parser("decide", help="approve, edit, reject or respond")
    decide.add_argument("review")
    decide.add_argument("decision", choices=["approve", "edit", "reject", "respond"])
    decide.add_argument("--comment", help="feedback (a rejected output's task runs again with it)")
    decide.add_argument("--output", help="edited output (JSON)")
    decide.add_argument("--input", help="edited input (JSON object)")
    decide.add_argument("--plan", help="edited plan (JSON)")
    decide.add_argument("--answer", help="the answer to an agent's question (JSON, or plain text)")
    decide.set_defaults(run=cmd_reviews_decide)
    claim = review_commands.add_parser("claim", help="take a review so nobody else decides it meanwhile")
    claim.add_argument("review")
    claim.set_defaults(run=cmd_reviews_claim)

    memory = commands.add_parser("memory", help="long-term memory: store, search")
    memory_commands = memory.add_subparsers(dest="memory_command", required=True, metavar="ACTION")
    store = memory_commands.add_parser("store", help="remember a text")
    store.add_argument("text")
    store.add_argument("--namespace")
    store.add_argument("--metadata", help="a JSON object")
    store.add_argument("--ttl", type=int, help="seconds to keep it")
    store.set_defaults(run=cmd_memory_store)
    search = memory_commands.add_parser("search", help="search memory, best first")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=None, help="how many results")
    search.add_argument("--namespace")
    search.add_argument("--mode", choices=["hybrid", "vector", "keyword"])
    search.add_argument("--where", action="append", metavar="KEY=VALUE", help="metadata filter (repeatable)")
    search.set_defaults(run=cmd_memory_search)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with Client(args.url, args.token) as client:
            if not client.token:
                raise CliError("an API token is needed: --token or AGENTBUS_TOKEN (POST /auth/token gives one)")
            args.run(client, args)
    except CliError as exc:
        sys.stderr.write(f"agentbus: {exc}\n")
        return exc.code
    except ApiError as exc:
        where = "".join(f"\n  {path}: {'; '.join(problems)}" for path, problems in exc.fields.items())
        sys.stderr.write(f"agentbus: {exc}{where}\n")
        return EXIT_USAGE if exc.status < 500 else EXIT_UNREACHABLE
    except (TransportError, OSError) as exc:
        sys.stderr.write(f"agentbus: cannot reach the server: {exc}\n")
        return EXIT_UNREACHABLE
    except ValueError as exc:  # a bad --url
        sys.stderr.write(f"agentbus: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
