"""StreamReader against a real Redis: every entry once, in order, whether the reader is
caught up (waiting on its process's hub), behind it (catching up from Redis), or
resuming after entries were trimmed away (told so with ``stream.truncated``)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

import core.streams
from core.streams import SNAPSHOT, TRUNCATED, AttemptStream, StreamReader
from tests.streaming.conftest import text_of


def writer(job_id: str, words: int, *, pause: float = 0.0) -> AttemptStream:
    stream = AttemptStream(job_id=job_id, task_id="t", key="k", attempt=1, timeout=30)
    for i in range(words):
        stream.delta(f"w{i} ")
        if pause:
            time.sleep(pause)
    return stream


async def read_all(reader: StreamReader, *, until: int, timeout: float = 10.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while sum(m["type"] == "task.delta" for m in got) < until:
        assert time.monotonic() < deadline, got
        got += await reader.next_batch(block_ms=500)
    reader.close()
    return got


def words_of(messages: list[dict]) -> list[str]:
    return [m["text"] for m in messages if m["type"] == "task.delta"]


@pytest.fixture
def job_id(redis_flushed) -> str:
    return str(uuid.uuid4())


def test_readers_at_different_positions_each_get_every_later_entry_once_in_order(job_id):
    first = writer(job_id, 5)  # written before anyone reads
    middle_id = None

    async def scenario():
        nonlocal middle_id
        from_start = StreamReader(job_id, after="0")
        head = await from_start.next_batch(block_ms=100)
        middle_id = head[3]["id"]  # the attempt marker, then w0 w1 w2
        from_middle = StreamReader(job_id, after=middle_id)
        live = threading.Thread(target=lambda: [first.delta(f"w{i} ") or time.sleep(0.01) for i in range(5, 30)])
        live.start()
        rest, resumed = await asyncio.gather(read_all(from_start, until=30 - 5), read_all(from_middle, until=27))
        live.join()
        return head + rest, resumed

    everything, resumed = asyncio.run(scenario())
    assert words_of(everything) == [f"w{i} " for i in range(30)]
    assert words_of(resumed) == [f"w{i} " for i in range(3, 30)]


def test_a_reader_left_behind_by_the_hubs_buffer_catches_up_from_redis_without_a_gap(job_id, monkeypatch):
    monkeypatch.setattr(core.streams, "HUB_BUFFER", 5)
    stream = writer(job_id, 2)

    async def scenario():
        quick, slow = StreamReader(job_id, after="0"), StreamReader(job_id, after="0")
        await quick.next_batch(block_ms=100)
        start = await slow.next_batch(block_ms=100)  # both now wait on the hub
        thread = threading.Thread(target=lambda: [stream.delta(f"w{i} ") for i in range(2, 40)])
        thread.start()
        rest_quick = await read_all(quick, until=38)
        thread.join()
        rest_slow = await read_all(slow, until=38)  # the hub kept only 5 of them
        return start + rest_slow, rest_quick

    slow, quick = asyncio.run(scenario())
    assert words_of(slow) == [f"w{i} " for i in range(40)]
    assert words_of(quick) == [f"w{i} " for i in range(2, 40)]


def test_a_reader_resuming_after_trimmed_entries_is_told_and_gets_the_checkpointed_text_then_the_rest(job_id, settings):
    settings.AGENTBUS_STREAM_MAXLEN = 100
    writer(job_id, 1020)  # XADD MAXLEN ~ 100 trims the oldest (in whole nodes); checkpoints every 50

    async def scenario():
        reader = StreamReader(job_id, after="0")
        batch = await reader.next_batch(block_ms=100)
        reader.close()
        return batch

    batch = asyncio.run(scenario())
    assert batch[0]["type"] == TRUNCATED and batch[0]["after"] == "0"
    snapshot = batch[1]
    assert snapshot["type"] == SNAPSHOT and snapshot["attempt"] == 1 and "id" not in snapshot  # not a resume token
    kept = words_of(batch[2:])
    assert snapshot["text"] == "".join(f"w{i} " for i in range(1000))  # the checkpoint after the 1000th
    # Then the pieces after it and only those: the whole text, once.
    assert kept == [f"w{i} " for i in range(1000, 1020)]
    assert text_of(batch) == "".join(f"w{i} " for i in range(1020))


def test_an_attempt_left_open_is_closed_as_abandoned_when_the_next_one_starts_and_a_late_end_changes_nothing(job_id):
    first = writer(job_id, 2)  # its worker "died": no end
    second = AttemptStream(job_id=job_id, task_id="t", key="k", attempt=2, timeout=30)
    second.delta("again")
    assert first.end("pending") is None  # too late: attempt 2 is the open one now
    second.end("succeeded")

    async def scenario():
        reader = StreamReader(job_id, after="0")
        batch = await reader.next_batch(block_ms=100)
        reader.close()
        return batch

    kinds = [(m["type"], m["attempt"]) for m in asyncio.run(scenario())]
    assert kinds == [("task.attempt", 1), ("task.delta", 1), ("task.delta", 1), ("task.abandoned", 1),
                     ("task.attempt", 2), ("task.delta", 2), ("task.end", 2)]  # fmt: skip
