"""A job's stream: what its agents say while they say it, in one Redis Stream per job.

What is kept where:

- **Chunks** (``task.delta`` text, ``task.emit`` custom data) and the markers around them
  live only in the Redis Stream ``agentbus:stream:<job id>``, never in PostgreSQL's event
  log. It is trimmed to about ``AGENTBUS_STREAM_MAXLEN`` entries (``XADD MAXLEN ~``) and
  expires ``AGENTBUS_STREAM_RESUME_SECONDS`` after an attempt ends (while an attempt runs,
  its task's timeout is added, so a long pause between tokens does not drop it).
- **A checkpoint of each task's text**: every CHECKPOINT_EVERY pieces, and at the
  attempt's end, the worker writes the attempt's text so far, with the id of the last
  piece it includes, to the hash ``agentbus:stream:<job id>:checkpoints`` (task id ->
  JSON). A reader whose position was trimmed away gets ``stream.truncated``, then a
  ``task.snapshot`` per task (its text up to ``upto``), then the entries kept, without
  the pieces a snapshot already holds: so even past MAXLEN it loses no text as long as
  the checkpoint is still in the kept range (with one task streaming, always).
- **Which attempt of each task is streaming** lives beside it, in the hash
  ``agentbus:stream:<job id>:open`` (task id -> ``"<attempt>|<key>"``): that is how a
  new attempt, or the reconciler after a worker died, knows to close the old one.
- **The final output** is committed once, at the end, to PostgreSQL as before; after
  the stream expires, that is where the whole text is.

Entry ids (``<ms>-<n>``) are the resume token: the SSE ``id:`` and the websocket
message's ``id``. Reading after an id (``XREAD``) gives exactly the entries that came
after it, in order, so a client that reconnects within the window misses nothing and
sees nothing twice. Every entry names its task, key and attempt; a delta carries the
``offset`` (characters of this attempt's text before it), so text is rebuilt by
appending, and a client can check it lost nothing.

The entry types, in an attempt's order:

1. ``task.attempt``: the attempt's first chunk is coming (start again from empty text).
   If the task's previous attempt was still open (its worker died before closing it),
   a ``task.abandoned`` for that attempt is written first, in the same script.
2. ``task.delta`` (``text``, ``offset``) and ``task.emit`` (``kind``, ``data``).
3. ``task.end`` with the task's ``status`` after the attempt (``succeeded``, or
   ``pending`` when a retry is scheduled, ``failed``, ...), written after the outcome
   was committed; or ``task.abandoned`` with a ``reason`` when the reconciler found the
   worker gone.

Writers are workers (sync, ``redis_client()``); readers are the web process's SSE view
and websocket consumer (asyncio): each ``StreamReader`` keeps its own position, and the
readers of one job in one process share one blocking ``XREAD`` (``_JobHub``). Nothing is
written for an attempt that never streams, so other tasks pay nothing.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

import redis.asyncio
from django.conf import settings

from core.redis import redis_client

logger = logging.getLogger(__name__)

# The message types clients receive (a contract, like jobs.events.EventType).
ATTEMPT = "task.attempt"
DELTA = "task.delta"
EMIT = "task.emit"
END = "task.end"
ABANDONED = "task.abandoned"
SNAPSHOT = "task.snapshot"  # a checkpoint's text, given to a reader behind the trimmed part
# Not entries: said by the readers themselves.
TRUNCATED = "stream.truncated"  # entries after the client's position were trimmed away
DONE = "stream.done"  # the job finished and its stream has nothing more (SSE only)

CLOSING = (END, ABANDONED)
# A task's text is checkpointed every this many pieces (and at the end of its attempt):
# well under the smallest MAXLEN (100), so a checkpoint stays within what is kept.
CHECKPOINT_EVERY = 50
# Entries read per XREAD: a reader far behind catches up in batches of this size.
READ_BATCH = 500

# The first chunk of an attempt: close the task's previous attempt if it was left open,
# mark this one's start, remember it as open; all at once, so two writers (a retry that
# started while the reconciler closes the old attempt) cannot interleave.
_OPEN = """
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then
  local attempt, key = string.match(prev, '^(%d+)|(.*)$')
  if attempt and attempt ~= ARGV[3] then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'type', 'task.abandoned', 'task', ARGV[1],
               'key', key, 'attempt', attempt, 'reason', 'a new attempt started')
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'type', 'task.attempt', 'task', ARGV[1],
                      'key', ARGV[2], 'attempt', ARGV[3], 'offset', '0')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3] .. '|' .. ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return id
"""

# The end of an attempt (``task.end``, or ``task.abandoned``), only if it is still the
# open one: a late close of an old attempt must not close its successor.
_CLOSE = """
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return false end
local attempt, key = string.match(prev, '^(%d+)|(.*)$')
if attempt ~= ARGV[2] then return false end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'type', ARGV[3], 'task', ARGV[1],
                      'key', key, 'attempt', attempt, ARGV[4], ARGV[6], 'offset', ARGV[7])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
return id
"""


def stream_key(job_id) -> str:
    return f"agentbus:stream:{job_id}"


def _open_key(job_id) -> str:
    return f"agentbus:stream:{job_id}:open"


def _checkpoints_key(job_id) -> str:
    return f"agentbus:stream:{job_id}:checkpoints"


def _scripts():
    client = redis_client()
    cached = getattr(client, "_agentbus_stream_scripts", None)
    if cached is None:
        cached = (client.register_script(_OPEN), client.register_script(_CLOSE))
        client._agentbus_stream_scripts = cached
    return cached


@dataclass
class AttemptStream:
    """The stream of one attempt of one task, written by the worker that runs it.

    Opened lazily by the first chunk, so an attempt that says nothing writes nothing.
    One writer per attempt (the worker), so the offset is counted here."""

    job_id: str
    task_id: str
    key: str
    attempt: int
    # How long the attempt may still run (its timeout), added to the resume window while it is open.
    timeout: float = 0.0
    offset: int = 0
    opened: bool = False
    _deadline: float = field(default=0.0, repr=False)
    _pieces: list = field(default_factory=list, repr=False)  # the attempt's text, for checkpoints
    _unsaved: int = field(default=0, repr=False)  # pieces since the last checkpoint
    _last_id: str = field(default="", repr=False)

    def _ttl(self) -> int:
        if not self._deadline:
            self._deadline = time.monotonic() + self.timeout
        running_for = max(0.0, self._deadline - time.monotonic())
        return int(settings.AGENTBUS_STREAM_RESUME_SECONDS + running_for) + 1

    def _open(self) -> None:
        if self.opened:
            return
        open_script, _ = _scripts()
        open_script(
            keys=[stream_key(self.job_id), _open_key(self.job_id)],
            args=[self.task_id, self.key, self.attempt, settings.AGENTBUS_STREAM_MAXLEN, self._ttl()],
        )
        self.opened = True

    def _add(self, fields: dict) -> str:
        self._open()
        ttl = self._ttl()
        entry = {"task": self.task_id, "key": self.key, "attempt": self.attempt, **fields}
        pipe = redis_client().pipeline(transaction=False)
        pipe.xadd(stream_key(self.job_id), entry, maxlen=settings.AGENTBUS_STREAM_MAXLEN, approximate=True)
        pipe.expire(stream_key(self.job_id), ttl)
        pipe.expire(_open_key(self.job_id), ttl)
        entry_id = pipe.execute()[0]
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def delta(self, text: str) -> str | None:
        """Append ``text`` to this attempt's text; returns the entry id (None for "")."""
        if not isinstance(text, str):
            raise TypeError(f"a stream chunk is text, not {type(text).__name__}")
        if not text:
            return None
        entry_id = self._add({"type": DELTA, "offset": self.offset, "text": text})
        self.offset += len(text)
        self._pieces.append(text)
        self._unsaved += 1
        self._last_id = entry_id
        if self._unsaved >= CHECKPOINT_EVERY:
            self._checkpoint()
        return entry_id

    def _checkpoint(self) -> None:
        text = "".join(self._pieces)
        self._pieces = [text]
        self._unsaved = 0
        value = json.dumps({"attempt": self.attempt, "key": self.key, "upto": self._last_id, "text": text})
        pipe = redis_client().pipeline(transaction=False)
        pipe.hset(_checkpoints_key(self.job_id), self.task_id, value)
        pipe.expire(_checkpoints_key(self.job_id), self._ttl())
        pipe.execute()

    def emit(self, kind: str, data=None) -> str:
        """A custom chunk (``kind`` names it, ``data`` is JSON), beside the text."""
        if not isinstance(kind, str) or not kind or len(kind) > 100:
            raise ValueError("an emitted chunk's kind is a non-empty string of at most 100 characters")
        return self._add({"type": EMIT, "kind": kind, "data": json.dumps(data), "offset": self.offset})

    def end(self, status: str) -> str | None:
        """Close the attempt's stream with the task's status after it; nothing if it never opened."""
        if not self.opened:
            return None
        if self._unsaved:
            self._checkpoint()
        return _close(self.job_id, self.task_id, self.attempt, END, "status", status, self.offset)


def _close(job_id, task_id, attempt: int, kind: str, name: str, value: str, offset: int | str = "") -> str | None:
    _, close_script = _scripts()
    entry_id = close_script(
        keys=[stream_key(job_id), _open_key(job_id)],
        args=[
            str(task_id), attempt, kind, name, settings.AGENTBUS_STREAM_MAXLEN, value, offset,
            settings.AGENTBUS_STREAM_RESUME_SECONDS,
        ],
    )  # fmt: skip
    if entry_id is None:
        return None
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def stream_abandon(*, job_id, task_id, attempt: int, reason: str) -> str | None:
    """Close an attempt's stream whose worker is gone (the reconciler calls it for silent
    workers): ``task.abandoned`` with ``reason``, if that attempt was still streaming.
    Never raises: a recovery must not stop at a Redis that is down."""
    try:
        return _close(job_id, task_id, attempt, ABANDONED, "reason", reason)
    except redis.RedisError:
        logger.warning("could not close the stream of task %s attempt %s", task_id, attempt, exc_info=True)
        return None


# --- reading ---------------------------------------------------------------------------


def entry_id_valid(value: str) -> bool:
    """A Redis Stream entry id, ``<ms>-<n>`` (or ``0``), as clients send it back."""
    ms, _, seq = value.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit()) and len(value) <= 41


def _id_tuple(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def stream_message(job_id, entry_id, fields: dict) -> dict:
    """The client's form of one stream entry (SSE ``data:``, a websocket frame)."""
    decoded = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    message = {"type": decoded.pop("type", DELTA), "id": entry_id, "job": str(job_id)}
    message["task"] = decoded.pop("task", "")
    message["key"] = decoded.pop("key", "")
    message["attempt"] = int(decoded.pop("attempt", 0) or 0)
    if decoded.get("offset", "") != "":
        message["offset"] = int(decoded.pop("offset"))
    else:
        decoded.pop("offset", None)
    if "data" in decoded:
        try:
            message["data"] = json.loads(decoded.pop("data"))
        except ValueError:
            message["data"] = None
    message.update(decoded)
    return message


_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _async_client() -> redis.asyncio.Redis:
    """One asyncio Redis client per event loop (a reader blocked in XREAD holds one of
    its pool's connections)."""
    import asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # Longer than any XREAD BLOCK a reader asks for (at most the idle interval):
        # redis-py's default of 5 s would end a 5 s block with a TimeoutError.
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_keepalive=True, socket_timeout=settings.AGENTBUS_STREAM_IDLE_SECONDS + 30
        )
        _async_clients[loop] = client
    return client


async def stream_trimmed_after(job_id, after: str) -> bool:
    """True when entries after ``after`` may have been trimmed away (MAXLEN), so a reader
    resuming there would have a gap; it is told with ``stream.truncated`` instead.

    Trimming removes the oldest entries, so there is a gap when some were removed and
    the oldest one kept comes after ``after`` (Redis keeps no record of the last one
    removed: a reader positioned exactly on it is told too, needlessly)."""
    try:
        info = await _async_client().xinfo_stream(stream_key(job_id))
    except redis.ResponseError:  # no such key: nothing was kept, nothing was trimmed
        return False
    removed = (info.get("entries-added") or 0) > (info.get("length") or 0)
    first = info.get("first-entry")
    if not removed or not first:
        return False
    first_id = first[0].decode() if isinstance(first[0], bytes) else str(first[0])
    return _id_tuple(after) < _id_tuple(first_id)


async def stream_snapshots(job_id) -> list[dict]:
    """Each task's last checkpoint, as ``task.snapshot`` messages, oldest first."""
    raw = await _async_client().hgetall(_checkpoints_key(job_id))
    snapshots = []
    for task_id, value in raw.items():
        try:
            saved = json.loads(value)
        except ValueError:
            continue
        snapshots.append(
            {"type": SNAPSHOT, "job": str(job_id), "task": task_id.decode() if isinstance(task_id, bytes) else task_id,
             "key": saved.get("key", ""), "attempt": int(saved.get("attempt", 0)), "offset": 0,
             "upto": saved.get("upto", "0-0"), "text": saved.get("text", "")}
        )  # fmt: skip
    return sorted(snapshots, key=lambda m: _id_tuple(m["upto"]))


async def stream_read(job_id, *, after: str, block_ms: int) -> list[dict]:
    """The entries after ``after`` (oldest first, at most READ_BATCH), waiting up to
    ``block_ms`` for one when there are none yet (0: not at all); [] when none came."""
    # XREAD's BLOCK 0 would wait for ever: 0 here means no BLOCK.
    reply = await _async_client().xread({stream_key(job_id): after}, count=READ_BATCH, block=block_ms or None)
    if not reply:
        return []
    _key, entries = reply[0]
    return [stream_message(job_id, entry_id, fields) for entry_id, fields in entries]


# The newest entries a process's hub of a job keeps for its readers.
HUB_BUFFER = 2000
# How long the hub's XREAD blocks; also how soon it notices its last reader left.
HUB_BLOCK_MS = 1000


class _JobHub:
    """One XREAD per job per web process, shared by that process's readers of the job.

    With a blocking XREAD per reader, every chunk woke 50 Redis connections for 50
    watchers, and the process parsed the same entry 50 times (bench/streaming.py). Here:
    1. The hub starts after the stream's newest entry (``floor``): every entry after
       that reaches its buffer, in order.
    2. It reads in a loop, appends each batch to a bounded buffer (when the oldest falls
       out, ``floor`` moves up to it) and wakes the waiting readers.
    3. It stops once no reader is left (seen after at most HUB_BLOCK_MS).
    A reader behind ``floor`` (it resumed from an older id) reads Redis itself until it
    has caught up, then waits on the hub: so no entry is skipped or repeated however
    the reader's position and the hub's relate.
    """

    def __init__(self, job_id) -> None:
        import asyncio

        self.job_id = job_id
        self.buffer: deque[tuple[tuple[int, int], dict]] = deque(maxlen=HUB_BUFFER)
        self.floor: tuple[int, int] | None = None  # None: not started, or Redis failed
        self.readers = 0
        self.closing = False
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        import asyncio

        try:
            newest = await _async_client().xrevrange(stream_key(self.job_id), count=1)
            position = newest[0][0].decode() if newest else "0-0"
            self.floor = _id_tuple(position)
            self.ready.set()
            while self.readers > 0:
                try:
                    messages = await stream_read(self.job_id, after=position, block_ms=HUB_BLOCK_MS)
                except redis.RedisError:
                    logger.warning("the stream hub of job %s failed to read; trying again", self.job_id, exc_info=True)
                    await asyncio.sleep(1.0)
                    continue
                if not messages:
                    continue
                position = messages[-1]["id"]
                for message in messages:
                    if len(self.buffer) == self.buffer.maxlen:
                        self.floor = self.buffer[0][0]  # the oldest falls out: entries after it remain
                    self.buffer.append((_id_tuple(message["id"]), message))
                woken, self.changed = self.changed, asyncio.Event()
                woken.set()
        except redis.RedisError:
            logger.warning("the stream hub of job %s could not start", self.job_id, exc_info=True)
        finally:
            # No await between the last check of ``readers`` and this: a reader joining
            # now finds the hub closing and starts a new one.
            self.closing = True
            self.floor = None
            self.ready.set()
            self.changed.set()
            hubs = _hubs.get(asyncio.get_running_loop(), {})
            if hubs.get(self.job_id) is self:
                del hubs[self.job_id]

    def after(self, position: tuple[int, int]) -> list[dict]:
        """The buffered entries after ``position`` (which is at or after ``floor``)."""
        fresh = []
        for entry_id, message in reversed(self.buffer):
            if entry_id <= position:
                break
            fresh.append(message)
        fresh.reverse()
        return fresh


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hub_join(job_id) -> _JobHub:
    import asyncio

    hubs = _hubs.setdefault(asyncio.get_running_loop(), {})
    hub = hubs.get(job_id)
    if hub is None or hub.closing:
        hub = hubs[job_id] = _JobHub(job_id)
    hub.readers += 1
    return hub


class StreamReader:
    """One reader's position in a job's stream: each ``next_batch`` gives the entries
    after the last one it gave, so every entry comes once, in order. A
    ``stream.truncated`` comes first if the position was trimmed away (the reader was
    too far behind, or resumed too late). Caught up, it waits on its process's hub of
    the job (one XREAD for all its readers); ``close()`` when done."""

    def __init__(self, job_id, *, after: str = "0") -> None:
        self.job_id = job_id
        self.position = after
        self._check_trim = True
        self._hub: _JobHub | None = None
        # After snapshots: task id -> (attempt, id); that attempt's entries up to the id are in them.
        self._covered: dict[str, tuple[int, tuple[int, int]]] = {}

    def close(self) -> None:
        if self._hub is not None:
            self._hub.readers -= 1
            self._hub = None

    async def next_batch(self, *, block_ms: int) -> list[dict]:
        """The next entries (at most READ_BATCH), waiting up to ``block_ms`` for one; []
        after that long a silence (the caller's moment for keep-alives and checks)."""
        import asyncio
        import time as clock

        deadline = clock.monotonic() + block_ms / 1000
        while True:
            if self._hub is None or self._hub.closing:
                self.close()
                self._hub = _hub_join(self.job_id)
            hub = self._hub
            try:
                await asyncio.wait_for(hub.ready.wait(), max(0.0, deadline - clock.monotonic()) or 0.001)
            except TimeoutError:
                return []
            position = _id_tuple(self.position)
            if hub.floor is None or position < hub.floor:
                messages, moved = await self._catch_up()
                if messages:
                    return messages
                if moved:  # everything read was in a snapshot already: read on
                    continue
            else:
                messages = hub.after(position)[:READ_BATCH]
                if messages:
                    self.position = messages[-1]["id"]
                    if fresh := self._uncovered(messages):
                        return fresh
                    continue
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(hub.changed.wait(), remaining)
            except TimeoutError:
                return []

    async def _catch_up(self) -> tuple[list[dict], bool]:
        """Read Redis directly from this reader's position (it is behind the hub); also
        whether the position moved."""
        told: list[dict] = []
        if self._check_trim and await stream_trimmed_after(self.job_id, self.position):
            told = [{"type": TRUNCATED, "job": str(self.job_id), "after": self.position}]
        if told:
            told += await stream_snapshots(self.job_id)
            self._covered = {m["task"]: (m["attempt"], _id_tuple(m["upto"])) for m in told[1:]}
        messages = await stream_read(self.job_id, after=self.position, block_ms=0)
        if messages:
            self.position = messages[-1]["id"]
        # A full batch means this reader is far behind: the writer may be trimming past it.
        self._check_trim = len(messages) >= READ_BATCH
        return told + self._uncovered(messages), bool(messages)

    def _uncovered(self, messages: list[dict]) -> list[dict]:
        """Without the entries a snapshot given to this reader already holds."""
        if not self._covered:
            return messages
        kept = []
        for message in messages:
            covered = self._covered.get(message.get("task"))
            if covered is not None and message["attempt"] == covered[0]:
                if _id_tuple(message["id"]) <= covered[1]:
                    continue
                del self._covered[message["task"]]  # past its snapshot: nothing more to drop
            kept.append(message)
        return kept
