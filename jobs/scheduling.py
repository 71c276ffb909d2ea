"""Who runs first: admitting queued tasks to the queues the workers read.

A task the lifecycle dispatches (jobs.lifecycle._dispatch) becomes *queued* in
PostgreSQL; it is *sent* to its RQ queue (``sent_at``) only when a worker can start it
soon. Each queue holds at most ``depth`` tasks in flight (sent or running): one per live
worker on it (RQ's registry) plus AGENTBUS_QUEUE_PREFETCH (0). So the RQ list is short
(empty, mostly: a worker that frees up admits its next task and runs it itself), and a
decision made now is never stuck behind decisions made earlier. Everything else waits
in PostgreSQL, in the order below; losing Redis loses only what was in flight, which
the reconciler sends again, and this module's hints (below).

The order, each time slots free up (``tasks_admit``):

1. **Priority**: the highest first (a task's own, by default its job's; -100 to 100).
2. **Fair shares**: within a priority, the *fair key* sent the fewest tasks over the
   last AGENTBUS_FAIR_WINDOW seconds (60), relative to its weight, goes first. The fair
   key is the job's owner, or the job's concurrency key when it names one. So a user
   who floods the deployment has been served the most, and a newcomer's tasks take the
   next slots; two users who both keep work waiting share the workers by weight
   (operators set weights per user or group in the admin: Scheduling weights).
3. **First come, first served** within a key.

Aging: one slot in AGENTBUS_OLDEST_SHARE (10) goes to the task that has waited longest,
whatever its priority or key, so the lowest band gets at least that share and never
waits for ever.

Holds, which never spend an attempt:

- a **concurrency key** (``"concurrency": {"key": "customer-42", "limit": 2}`` on a
  job; keys are scoped to their owner) caps the key's *tasks* in flight over the whole
  deployment; the rest wait, ``wait_reason = "concurrency_key"``;
- an agent's **rate limit** (requests and tokens per minute, agents.rate_limits): a task
  over it waits, ``"rate_limit"``, and the orchestrator is woken when the window allows.

A waiting task says why (``wait_reason``) on GET /jobs/{id}, on the dashboard and in the
``agentbus_tasks_waiting`` metric: ``capacity`` (every worker busy), ``priority``,
``fair_share``, ``concurrency_key`` or ``rate_limit``. The reason is that of the head of
each key's line, refreshed at each admission; the tasks behind it keep ``capacity``.

Who admits: the process that commits a dispatch, when the queue has room; a worker,
after each attempt it ends, when its queue has work waiting (a Redis hint; then the
worker runs the task it admits itself when the RQ list is empty, without the round trip
through Redis); and the orchestrator, every pass, which also covers a lost hint.
Admissions are serialised by one PostgreSQL advisory lock. It is taken in a transaction
of its own, or, after a success, last in the success's transaction (admit_with_success:
after the job's row, never before it); the task rows an admission marks are taken with
SKIP LOCKED, so it never waits on a job's transaction and cannot deadlock with one
(jobs.lifecycle's lock order is the job, then its tasks, then the admission lock).

The fast path: a task with no concurrency key, of an agent without a rate limit, on a
queue with nothing waiting and room in flight, is sent in the dispatching transaction
itself, as without scheduling; the check costs one statement. With
AGENTBUS_SCHEDULING off, every ready task is sent at once (first in, first out).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from redis.exceptions import RedisError

from agents.rate_limits import rate_release, rate_reserve
from agents.registry import agent_get
from core.queue import TaskMessage, queues_capacity, tasks_enqueue
from core.redis import redis_client
from core.wakeup import orchestrator_wake
from jobs.models import SchedulingWeight, Task, TaskStatus

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the admitter: "abus".
ADMIT_LOCK = 0x61627573
# Redis set of the queues with tasks waiting in PostgreSQL: a worker that ends an attempt
# admits only when its queue is in it. A hint: the orchestrator admits every pass anyway.
WAITING_KEY = "agentbus:scheduling:waiting"

WAIT_REASONS = ("capacity", "priority", "fair_share", "concurrency_key", "rate_limit")

_IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)


def task_message(task: Task, *, job_id=None) -> TaskMessage:
    """The queue message of a task's current attempt (``job_id`` when the row was read
    without it)."""
    return TaskMessage(str(task.id), task.attempt, task.queue, task.timeout, str(job_id or task.job_id))


def fair_key_of(owner_id, concurrency_key: str = "") -> str:
    """A task's fair key: its concurrency key (already scoped to the owner), else the owner."""
    return concurrency_key or str(owner_id)


def concurrency_key_of(owner_id, key: str) -> str:
    """A job's concurrency key as stored: scoped to its owner, so one user's "customer-42"
    never holds back another's."""
    return f"{owner_id}:{key}" if key else ""


def _owner_of(fair_key: str) -> str:
    return fair_key.split(":", 1)[0]


def _policy_free(task: Task) -> bool:
    """A task no hold applies to: it may take the fast path."""
    if task.concurrency_key:
        return False
    spec = agent_get(task.agent)
    return spec is None or not (spec.rate_limit_rpm or spec.rate_limit_tpm)


# --- what a queue holds ----------------------------------------------------------------------

_workers_cache: dict[str, tuple[float, int]] = {}


def _depth(workers: int) -> int:
    """Tasks a queue may hold in flight: one per live worker on it, plus the prefetch."""
    return max(1, workers) + settings.AGENTBUS_QUEUE_PREFETCH


def _workers(queues: Iterable[str]) -> dict[str, int]:
    """Live workers per queue, cached for two seconds (a Redis round trip otherwise)."""
    now = time.monotonic()
    stale = [q for q in queues if now - _workers_cache.get(q, (-10.0, 0))[0] > 2.0]
    if stale:
        try:
            for name, (workers, _) in queues_capacity(stale).items():
                _workers_cache[name] = (now, workers)
        except RedisError:
            for name in stale:
                _workers_cache.setdefault(name, (now, 0))
    return {q: _workers_cache[q][1] for q in queues}


def _queue_counts(queues: Iterable[str], *, cap: int) -> dict[str, list[int]]:
    """``{queue: [in flight, waiting]}``, the waiting counted up to ``cap``, in one
    statement. Both reads are bounded whatever the backlog: the tasks in flight by the
    task_active_queue index (``sent_at`` set: a claim sets it if it was not), the
    waiting ones by task_waiting, stopping at ``cap``."""
    queues = list(queues)
    if not queues:
        return {}
    part = (
        "SELECT %s, (SELECT COUNT(*) FROM jobs_task WHERE queue = %s AND status IN (%s, %s) "
        "AND sent_at IS NOT NULL), (SELECT COUNT(*) FROM (SELECT 1 FROM jobs_task WHERE queue = %s "
        "AND status = %s AND sent_at IS NULL LIMIT %s) w)"
    )
    params: list = []
    for name in queues:
        params += [name, name, TaskStatus.QUEUED, TaskStatus.RUNNING, name, TaskStatus.QUEUED, cap]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join([part] * len(queues)), params)
        return {name: [flight, waiting] for name, flight, waiting in cursor.fetchall()}


def _queues_waiting() -> list[str]:
    """The queues with tasks waiting, by a skip scan of the task_waiting index (one step
    per queue, not per task)."""
    sql = (
        "WITH RECURSIVE q(queue) AS ("
        "SELECT (SELECT queue FROM jobs_task WHERE status = %s AND sent_at IS NULL ORDER BY queue LIMIT 1) "
        "UNION ALL SELECT (SELECT t.queue FROM jobs_task t WHERE t.status = %s AND t.sent_at IS NULL "
        "AND t.queue > q.queue ORDER BY t.queue LIMIT 1) FROM q WHERE q.queue IS NOT NULL) "
        "SELECT queue FROM q WHERE queue IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [TaskStatus.QUEUED, TaskStatus.QUEUED])
        return [row[0] for row in cursor.fetchall()]


# --- the dispatching transaction's part ------------------------------------------------------


@dataclass
class DispatchPlan:
    """What _dispatch may send now, and whether it should ask for an admission after
    its commit (tasks left waiting on a queue with room: held ones, or a line)."""

    send_now: set
    admit_after: bool
    waiting_queues: set


def dispatch_plan(ready: list[Task]) -> DispatchPlan:
    if not settings.AGENTBUS_SCHEDULING:
        return DispatchPlan({t.id for t in ready}, False, set())
    queues = {t.queue for t in ready}
    counts = _queue_counts(queues, cap=1)  # only whether anything waits matters here
    workers = _workers(queues)
    send_now, admit_after, waiting_queues = set(), False, set()
    room = {q: _depth(workers[q]) - counts.get(q, [0, 0])[0] for q in queues}
    for task in ready:
        queue = task.queue
        if not counts.get(queue, [0, 0])[1] and room[queue] > 0 and _policy_free(task):
            send_now.add(task.id)
            room[queue] -= 1
        else:
            waiting_queues.add(queue)
            admit_after |= room[queue] > 0
    return DispatchPlan(send_now, admit_after, waiting_queues)


def admission_ask(queues: set, *, admit: bool) -> None:
    """After a commit that left tasks waiting: hint the workers of those queues, and
    admit now if there was room."""
    _hint(queues, waiting=True)
    if admit:
        tasks_admit(queues)


def _hint(queues: Iterable[str], *, waiting: bool) -> None:
    queues = list(queues)
    if not queues:
        return
    try:
        if waiting:
            redis_client().sadd(WAITING_KEY, *queues)
        else:
            redis_client().srem(WAITING_KEY, *queues)
    except RedisError as exc:  # the orchestrator admits every pass anyway
        logger.debug("scheduling hint not written: %s", exc)


def admit_after_attempt(queue: str | None) -> TaskMessage | None:
    """A worker ended an attempt on ``queue``: a slot is free. If work waits there, admit
    it, and take the first task admitted to this queue to run next (when nothing waits
    on the RQ list ahead of it). One Redis read when nothing waits."""
    if not _waits(queue):
        return None
    return tasks_admit({queue}, handoff_queue=queue)


def admit_with_success(queue: str | None) -> TaskMessage | None:
    """As admit_after_attempt, inside the transaction of the success that frees the slot
    (jobs.lifecycle.task_succeed, after its own writes): the admission's statements ride
    on that transaction's BEGIN and COMMIT instead of a transaction of their own, two
    round trips less on every task a busy worker runs.

    The advisory lock is then taken while the succeeding job's row is held: that is in
    the lock order (the job, then the admission), and an admission never waits on a row
    (SKIP LOCKED), so one that holds the advisory lock never waits on this job."""
    if not _waits(queue):
        return None
    return _admit({queue}, handoff_queue=queue)


def _waits(queue: str | None) -> bool:
    """Whether the queue may have tasks waiting for a slot (this module's Redis hint)."""
    if not settings.AGENTBUS_SCHEDULING or not queue:
        return False
    try:
        return bool(redis_client().sismember(WAITING_KEY, queue))
    except RedisError:
        return False


# --- admission ---------------------------------------------------------------------------


@dataclass(eq=False)  # by identity: a candidate is a dict key while choosing
class _Candidate:
    id: object
    job_id: object
    agent: str
    attempt: int
    queue: str
    timeout: int
    priority: int
    fair_key: str
    concurrency_key: str
    concurrency_limit: int | None
    queued_at: datetime
    wait_reason: str

    @property
    def member(self) -> str:
        return f"{self.id}:{self.attempt}"


_UUID = Task._meta.pk

_CANDIDATE_FIELDS = (
    "id", "job_id", "agent", "attempt", "queue", "timeout", "priority", "fair_key", "concurrency_key",
    "concurrency_limit", "queued_at", "wait_reason",
)  # fmt: skip


def tasks_admit(queues: Iterable[str] | None = None, *, handoff_queue: str | None = None) -> TaskMessage | None:
    """Send the waiting tasks that fit in their queues, in policy order (module docstring).

    ``queues``: those to look at (None: all with active tasks). ``handoff_queue``: the
    calling worker's queue; the first task admitted there is returned for it to run
    itself, if nothing is on that RQ list ahead of it. Everything else admitted is sent
    on commit."""
    if not settings.AGENTBUS_SCHEDULING:
        return None
    with transaction.atomic():
        return _admit(queues, handoff_queue=handoff_queue)


def _admit(queues: Iterable[str] | None, *, handoff_queue: str | None) -> TaskMessage | None:
    """tasks_admit's work, in the caller's transaction (the advisory lock is held to its end)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADMIT_LOCK])
    now = timezone.now()  # after the wait for the lock: sent_at is when it was sent
    names = list(queues) if queues is not None else _queues_waiting()
    # Waiting counted up to one more than a queue can take now: enough to know
    # whether its line empties.
    workers = _workers(names)
    counts = _queue_counts(names, cap=1 + max((_depth(workers[q]) for q in names), default=0))
    waiting = {q: c for q, c in counts.items() if c[1]}
    if not waiting:
        _hint(names, waiting=False)
        return None
    capacity = _capacity(waiting)
    picks: list[_Candidate] = []
    reasons: dict = {}
    wake: float | None = None
    for queue, (in_flight, queued) in waiting.items():
        room = _depth(capacity[queue][0]) - in_flight
        if room <= 0:
            continue
        chosen, why, wait = _choose(queue, room, now)
        picks += chosen
        reasons.update(why)
        if wait is not None:
            wake = wait if wake is None else min(wake, wait)
        waiting[queue] = [in_flight + len(chosen), queued - len(chosen)]
    sent = _mark_sent(picks, now)
    _mark_reasons(reasons)
    messages = [TaskMessage(str(c.id), c.attempt, c.queue, c.timeout, str(c.job_id)) for c in picks if c.id in sent]
    for candidate in picks:
        spec = agent_get(candidate.agent)
        if candidate.id not in sent and spec is not None:  # its job's transaction holds it: next round
            with contextlib.suppress(RedisError):
                rate_release(spec, member=candidate.member)
    handoff = None
    if handoff_queue and not capacity.get(handoff_queue, (0, 0))[1]:
        handoff = next((m for m in messages if m.queue == handoff_queue), None)
        if handoff is not None:
            messages.remove(handoff)
    drained = [q for q, (_, queued) in waiting.items() if queued <= 0]
    if messages:
        transaction.on_commit(lambda: tasks_enqueue(messages), robust=True)
    transaction.on_commit(lambda: _hint(drained, waiting=False), robust=True)
    if wake is not None:  # sent on commit by orchestrator_wake itself
        orchestrator_wake(now + timedelta(seconds=wake))
    return handoff


def _capacity(queues: Iterable[str]) -> dict[str, tuple[int, int]]:
    queues = list(queues)
    try:
        capacity = queues_capacity(queues)
    except RedisError:
        return {q: (0, 1) for q in queues}  # no handing off blind; one slot each
    now = time.monotonic()
    for name, (workers, _) in capacity.items():
        _workers_cache[name] = (now, workers)
    return capacity


def _choose(queue: str, room: int, now: datetime) -> tuple[list[_Candidate], dict, float | None]:
    """Up to ``room`` waiting tasks of the queue, in policy order; the reasons of the
    heads passed over; the seconds until a rate limit allows one more (None: none hit).

    1. Read each fair key's first ``room`` tasks (priority, then age): the candidates.
    2. Repeatedly take, among the keys' heads not held, the one of the highest priority
       whose key was served least for its weight (one slot in AGENTBUS_OLDEST_SHARE:
       the longest waiting task of the queue instead).
    3. A head held by its concurrency key or its agent's rate limit is set aside.
    """
    lines = _lines(queue, room)
    keys = list(lines)
    # Shares decide only between keys: with one key waiting, its own order does.
    served = _served(keys, now) if len(keys) > 1 else defaultdict(int)
    weights = _weights(keys) if len(keys) > 1 else defaultdict(lambda: 1)
    running = _concurrency_in_flight({c.concurrency_key for line in lines.values() for c in line if c.concurrency_key})
    limited: dict[str, float] = {}  # agent -> seconds until its window allows one more
    picks: list[_Candidate] = []
    held: dict = {}  # task id -> reason, for those set aside
    share = settings.AGENTBUS_OLDEST_SHARE
    while len(picks) < room:
        heads = [line[0] for line in lines.values() if line]
        if not heads:
            break
        head = None
        if share and random.random() < 1.0 / share:
            head = _oldest(queue, exclude={p.id for p in picks} | set(held))
        if head is None:
            top = max(h.priority for h in heads)
            head = min(
                (h for h in heads if h.priority == top),
                key=lambda h: (served[h.fair_key] / weights[h.fair_key], h.queued_at),
            )
        _line_remove(lines, head)
        if head.concurrency_key and running[head.concurrency_key] >= (head.concurrency_limit or 1):
            held[head.id] = (head, "concurrency_key")
            continue
        if head.agent in limited:
            held[head.id] = (head, "rate_limit")
            continue
        wait = _reserve(head)
        if wait > 0:
            limited[head.agent] = wait
            held[head.id] = (head, "rate_limit")
            continue
        picks.append(head)
        served[head.fair_key] += 1
        if head.concurrency_key:
            running[head.concurrency_key] += 1
    reasons = dict(held.values())
    top = max((p.priority for p in picks), default=None)
    picked_keys = {p.fair_key for p in picks}
    for line in lines.values():
        if line:
            head = line[0]
            if top is not None and top > head.priority:
                reasons[head] = "priority"
            elif picked_keys - {head.fair_key}:
                reasons[head] = "fair_share"
            else:
                reasons[head] = "capacity"
    changed = {c.id: reason for c, reason in reasons.items() if c.wait_reason != reason}
    return picks, changed, (min(limited.values()) if limited else None)


def _reserve(candidate: _Candidate) -> float:
    """Take one request of the candidate's agent's rate limit; the seconds to wait if
    its window is full (a second when Redis cannot say: a limit is not sent past blind)."""
    spec = agent_get(candidate.agent)
    if spec is None:
        return 0.0
    try:
        return rate_reserve(spec, member=candidate.member)
    except RedisError as exc:
        logger.warning("rate limit of agent %s unreadable (%s); its tasks wait", spec.name, exc)
        return 1.0


def _line_remove(lines: dict[str, deque[_Candidate]], candidate: _Candidate) -> None:
    line = lines.get(candidate.fair_key)
    if line:
        for queued in line:
            if queued.id == candidate.id:
                line.remove(queued)
                return


def _lines(queue: str, room: int) -> dict[str, deque[_Candidate]]:
    """Each fair key's first ``room`` waiting tasks on the queue, in its order.

    On PostgreSQL a skip scan of the task_line index finds the keys, then reads each
    key's first tasks: the cost grows with the keys waiting, not with the tasks. SQLite
    (make run) has no LATERAL and ranks the whole line instead."""
    columns = ", ".join(f"t.{Task._meta.get_field(f).column}" for f in _CANDIDATE_FIELDS)
    if connection.vendor == "postgresql":
        waiting = "t.status = %s AND t.sent_at IS NULL AND t.queue = %s"
        sql = (
            f"WITH RECURSIVE k(fair_key) AS (SELECT (SELECT t.fair_key FROM jobs_task t WHERE {waiting} "
            f"ORDER BY t.fair_key LIMIT 1) UNION ALL SELECT (SELECT t.fair_key FROM jobs_task t WHERE {waiting} "
            "AND t.fair_key > k.fair_key ORDER BY t.fair_key LIMIT 1) FROM k WHERE k.fair_key IS NOT NULL) "
            f"SELECT {columns} FROM k CROSS JOIN LATERAL (SELECT {columns} FROM jobs_task t WHERE {waiting} "
            "AND t.fair_key = k.fair_key ORDER BY t.priority DESC, t.queued_at, t.id LIMIT %s) t "
            "WHERE k.fair_key IS NOT NULL ORDER BY t.fair_key, t.priority DESC, t.queued_at, t.id"
        )
        params = [TaskStatus.QUEUED, queue] * 3 + [room]
    else:
        sql = (
            f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY t.fair_key "
            "ORDER BY t.priority DESC, t.queued_at, t.id) AS line_rank FROM jobs_task t "
            "WHERE t.status = %s AND t.sent_at IS NULL AND t.queue = %s) t WHERE t.line_rank <= %s "
            "ORDER BY t.fair_key, t.line_rank"
        )
        params = [TaskStatus.QUEUED, queue, room]
    lines: dict[str, deque[_Candidate]] = defaultdict(deque)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            candidate = _candidate(row)
            lines[candidate.fair_key].append(candidate)
    return lines


def _candidate(row) -> _Candidate:
    values = dict(zip(_CANDIDATE_FIELDS, row, strict=True))
    # Raw rows on SQLite (make run) carry ids as hex text and times as ISO text.
    values["id"] = _UUID.to_python(values["id"])
    values["job_id"] = _UUID.to_python(values["job_id"])
    queued_at = values["queued_at"]
    if isinstance(queued_at, str):
        queued_at = datetime.fromisoformat(queued_at)
    values["queued_at"] = queued_at if queued_at.tzinfo else queued_at.replace(tzinfo=UTC)
    return _Candidate(**values)


def _oldest(queue: str, *, exclude: set) -> _Candidate | None:
    """The task that has waited longest on the queue (the task_waiting index)."""
    rows = (
        Task.objects.filter(status=TaskStatus.QUEUED, sent_at__isnull=True, queue=queue)
        .exclude(id__in=exclude)
        .order_by("queued_at")
        .values_list(*_CANDIDATE_FIELDS)[:1]
    )
    row = next(iter(rows), None)
    return _candidate(row) if row is not None else None


def _served(keys: list[str], now: datetime) -> defaultdict[str, int]:
    """Tasks sent per fair key over the fairness window (the task_fair_sent index)."""
    since = now - timedelta(seconds=settings.AGENTBUS_FAIR_WINDOW)
    served: defaultdict[str, int] = defaultdict(int)
    rows = (
        Task.objects.filter(fair_key__in=keys, sent_at__gte=since)
        .values("fair_key")
        .annotate(n=Count("id"))
        .values_list("fair_key", "n")
    )
    served.update(dict(rows))
    return served


_weights_cache: tuple[float, dict[str, int], dict[str, int]] = (-10.0, {}, {})


def _weights(keys: list[str]) -> defaultdict[str, int]:
    """Each fair key's weight: its owner's, or the largest of the owner's groups', else 1.
    The operators' table is small and read at most every ten seconds."""
    global _weights_cache
    if time.monotonic() - _weights_cache[0] > 10.0:
        by_user: dict[str, int] = {}
        by_group: dict[str, int] = {}
        for user_id, group_id, weight in SchedulingWeight.objects.values_list("user_id", "group_id", "weight"):
            if user_id is not None:
                by_user[str(user_id)] = weight
            else:
                by_group[str(group_id)] = weight
        _weights_cache = (time.monotonic(), by_user, by_group)
    _, by_user, by_group = _weights_cache
    weights: defaultdict[str, int] = defaultdict(lambda: 1)
    owners = {key: _owner_of(key) for key in keys}
    group_weights: dict[str, int] = {}
    if by_group:
        memberships = (
            get_user_model()
            .groups.through.objects.filter(user_id__in=set(owners.values()), group_id__in=[int(g) for g in by_group])
            .values_list("user_id", "group_id")
        )
        for user_id, group_id in memberships:
            group_weights[str(user_id)] = max(group_weights.get(str(user_id), 0), by_group[str(group_id)])
    for key, owner in owners.items():
        weights[key] = by_user.get(owner) or group_weights.get(owner) or 1
    return weights


def _concurrency_in_flight(keys: set[str]) -> defaultdict[str, int]:
    in_flight: defaultdict[str, int] = defaultdict(int)
    if keys:
        rows = (
            # In flight: sent or running, and a running task was sent (task_claim).
            Task.objects.filter(concurrency_key__in=keys, status__in=_IN_FLIGHT, sent_at__isnull=False)
            .values("concurrency_key")
            .annotate(n=Count("id"))
            .values_list("concurrency_key", "n")
        )
        in_flight.update(dict(rows))
    return in_flight


def _mark_sent(picks: list[_Candidate], now: datetime) -> set:
    """Mark the picks sent; those a job's transaction holds are skipped (SKIP LOCKED)
    and stay waiting. Returns the ids marked."""
    if not picks:
        return set()
    return set(_update_waiting([p.id for p in picks], sent_at=now, wait_reason=""))


def _mark_reasons(reasons: dict) -> None:
    """Write the reasons that changed, one UPDATE per reason, skipping locked rows."""
    by_reason: defaultdict[str, list] = defaultdict(list)
    for task_id, reason in reasons.items():
        by_reason[reason].append(task_id)
    for reason, ids in by_reason.items():
        _update_waiting(ids, wait_reason=reason)


def _update_waiting(ids: list, **values) -> list:
    """Update those of these tasks still waiting that no transaction holds (SKIP LOCKED:
    admission never waits on a job's lock); returns the ids updated. One statement on
    PostgreSQL (``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``); SQLite,
    which has no row locks, updates them in the same way without."""
    if connection.vendor != "postgresql":
        still = Task.objects.filter(id__in=ids, status=TaskStatus.QUEUED, sent_at__isnull=True)
        free = list(still.values_list("id", flat=True))
        Task.objects.filter(id__in=free).update(**values)
        return free
    assignments = ", ".join(f"{Task._meta.get_field(name).column} = %s" for name in values)
    sql = (
        f"UPDATE jobs_task SET {assignments} WHERE id IN (SELECT id FROM jobs_task WHERE id = ANY(%s) "
        "AND status = %s AND sent_at IS NULL FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values.values(), list(ids), TaskStatus.QUEUED])
        return [row[0] for row in cursor.fetchall()]


# --- what operators and users see --------------------------------------------------------


def waiting_by_reason() -> dict[tuple[str, str], int]:
    """``{(queue, reason): tasks}`` waiting in PostgreSQL, for the metrics."""
    rows = (
        Task.objects.filter(status=TaskStatus.QUEUED, sent_at__isnull=True)
        .values("queue", "wait_reason")
        .annotate(n=Count("id"))
        .values_list("queue", "wait_reason", "n")
    )
    return {(queue, reason or "capacity"): n for queue, reason, n in rows}
