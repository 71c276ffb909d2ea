"""The sync :class:`Client` and the async :class:`AsyncClient` of the agentbus API.

Both send the calls described in ``_requests`` over httpx, raise an
:class:`~agentbus_client.errors.ApiError` subclass carrying the server's JSON error for
any error status, and follow a job's live events over its websocket
(``/ws/jobs/{id}?after=N``), reconnecting after a dropped connection from the last
sequence number seen, so no event is missed or repeated.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Self

import httpx
from websockets.exceptions import InvalidStatus, WebSocketException

from agentbus_client import _requests as calls
from agentbus_client._requests import JOB_FINISHED, Call
from agentbus_client.errors import ApiError, TransportError, api_error

Event = dict[str, Any]
# Called with (reconnection number, the error that dropped the socket) before each reconnect.
ReconnectHook = Callable[[int, BaseException], None]

USER_AGENT = "agentbus-client/0.1"
# Socket failures in a row before following falls back to polling the event log (a
# proxy that does not pass websockets, say).
SOCKET_FAILURES_BEFORE_POLLING = 8


def _backoff(failures: int) -> float:
    return min(2.0, 0.1 * 2**failures)


def _decode(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {"error": f"http_{response.status_code}", "detail": response.text[:500]}
        raise api_error(response.status_code, body, response.headers)
    if not response.content:
        return {}
    return response.json()


def _finished(event: Event) -> bool:
    return event.get("type") == "job.status" and event.get("status") in JOB_FINISHED


class _Base:
    def __init__(self, url: str | None, token: str | None, timeout: float) -> None:
        self.url, self.token = calls.settings_from_env(url, token)
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            self.headers["Authorization"] = f"Token {self.token}"

    def _socket_url(self, job_id: str, after: int) -> str:
        return calls.websocket_url(self.url, f"/ws/jobs/{job_id}?after={after}")

    def _socket_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"} if self.token else {}


class Client(_Base):
    """A synchronous client. ``Client(url, token)``, or AGENTBUS_URL / AGENTBUS_TOKEN."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = http or httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout, trust_env=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call) -> Any:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params or None, json=call.json, headers=call.headers or None
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}: {exc}") from exc
        return _decode(response)

    # jobs
    def submit(self, *, plan: dict | None = None, requirements: str | None = None, **options: Any) -> dict:
        """Submit a job (a plan, requirements, or both); answers the new job."""
        return self.call(calls.submit(plan=plan, requirements=requirements, **options))

    def jobs(self, *, status: str | None = None, page: int | None = None) -> dict:
        return self.call(calls.jobs(status=status, page=page))

    def job(self, job_id: str) -> dict:
        return self.call(calls.job(job_id))

    def results(self, job_id: str) -> dict:
        """A finished job's result; a ConflictError (409) while it runs."""
        return self.call(calls.results(job_id))

    def cancel(self, job_id: str) -> dict:
        return self.call(calls.cancel(job_id))

    def events(self, job_id: str, *, after: int = 0, limit: int | None = None) -> dict:
        return self.call(calls.events(job_id, after=after, limit=limit))

    def follow(
        self, job_id: str, *, after: int = 0, timeout: float | None = None, on_reconnect: ReconnectHook | None = None
    ) -> Iterator[Event]:
        """The job's events after ``after``, live, until it finishes (the final
        ``job.status`` event included). A dropped socket is reopened after the last
        ``seq`` seen; after repeated failures the event log is polled instead."""
        from websockets.sync.client import connect

        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.job(job_id)  # a 404 or 401 now, rather than a refused handshake later
        last = after
        if job["status"] in JOB_FINISHED and job["last_seq"] <= last:
            return
        failures = reconnects = 0
        while True:
            try:
                with connect(
                    self._socket_url(job["id"], last),
                    additional_headers=self._socket_headers(),
                    proxy=None,
                    open_timeout=10,
                ) as socket:
                    failures = 0
                    while True:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
                        event = json.loads(socket.recv(timeout=remaining))
                        if event["seq"] <= last:
                            continue  # already seen before a reconnect
                        last = event["seq"]
                        yield event
                        if _finished(event):
                            return
            except InvalidStatus:
                self.job(job_id)  # raises the API's reason (the token was revoked, say)
                raise
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                failure: BaseException = TransportError("websocket open timed out")
            except (WebSocketException, OSError) as exc:
                failure = exc
            failures += 1
            if failures >= SOCKET_FAILURES_BEFORE_POLLING:
                yield from self._poll(job_id, last, deadline)
                return
            reconnects += 1
            if on_reconnect is not None:
                on_reconnect(reconnects, failure)
            time.sleep(_backoff(failures))

    def _poll(self, job_id: str, last: int, deadline: float | None) -> Iterator[Event]:
        while deadline is None or time.monotonic() < deadline:
            try:
                page = self.events(job_id, after=last)
            except TransportError:
                time.sleep(1.0)
                continue
            for event in page["events"]:
                last = event["seq"]
                yield event
                if _finished(event):
                    return
            if not page["events"]:
                time.sleep(0.5)
        raise TimeoutError(f"job {job_id} did not finish in time")

    def wait(self, job_id: str, *, timeout: float | None = None) -> dict:
        """Follow the job until it finishes and answer its results."""
        for _ in self.follow(job_id, timeout=timeout):
            pass
        return self.results(job_id)

    # reviews
    def reviews(self, *, status: str | None = None, kind: str | None = None, job: str | None = None) -> dict:
        return self.call(calls.reviews(status=status, kind=kind, job=job))

    def review(self, review_id: str) -> dict:
        return self.call(calls.review(review_id))

    def decide(self, review_id: str, decision: str, **values: Any) -> dict:
        """approve | edit (input=/output=/plan=) | reject (comment=) | respond (answer=)."""
        return self.call(calls.decide(review_id, decision, **values))

    def claim(self, review_id: str) -> dict:
        return self.call(calls.claim(review_id))

    def release(self, review_id: str) -> dict:
        return self.call(calls.release(review_id))

    # memory
    def memory_store(self, text: str, **options: Any) -> dict:
        return self.call(calls.memory_store(text, **options))

    def memory_search(self, query: str, **options: Any) -> dict:
        return self.call(calls.memory_search(query, **options))

    def agents(self) -> dict:
        return self.call(calls.agents())


class AsyncClient(_Base):
    """The asynchronous client: the same methods as :class:`Client`, awaited."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = http or httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=timeout, trust_env=False
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call) -> Any:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params or None, json=call.json, headers=call.headers or None
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.url}: {exc}") from exc
        return _decode(response)

    async def submit(self, *, plan: dict | None = None, requirements: str | None = None, **options: Any) -> dict:
        return await self.call(calls.submit(plan=plan, requirements=requirements, **options))

    async def jobs(self, *, status: str | None = None, page: int | None = None) -> dict:
        return await self.call(calls.jobs(status=status, page=page))

    async def job(self, job_id: str) -> dict:
        return await self.call(calls.job(job_id))

    async def results(self, job_id: str) -> dict:
        return await self.call(calls.results(job_id))

    async def cancel(self, job_id: str) -> dict:
        return await self.call(calls.cancel(job_id))

    async def events(self, job_id: str, *, after: int = 0, limit: int | None = None) -> dict:
        return await self.call(calls.events(job_id, after=after, limit=limit))

    async def follow(
        self, job_id: str, *, after: int = 0, timeout: float | None = None, on_reconnect: ReconnectHook | None = None
    ) -> AsyncIterator[Event]:
        """As :meth:`Client.follow`."""
        from websockets.asyncio.client import connect

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        job = await self.job(job_id)
        last = after
        if job["status"] in JOB_FINISHED and job["last_seq"] <= last:
            return
        failures = reconnects = 0
        while True:
            try:
                async with connect(
                    self._socket_url(job["id"], last),
                    additional_headers=self._socket_headers(),
                    proxy=None,
                    open_timeout=10,
                ) as socket:
                    failures = 0
                    while True:
                        remaining = None if deadline is None else deadline - loop.time()
                        if remaining is not None and remaining <= 0:
                            raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
                        event = json.loads(await asyncio.wait_for(socket.recv(), remaining))
                        if event["seq"] <= last:
                            continue
                        last = event["seq"]
                        yield event
                        if _finished(event):
                            return
            except InvalidStatus:
                await self.job(job_id)
                raise
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    raise
                failure: BaseException = TransportError("websocket open timed out")
            except (WebSocketException, OSError) as exc:
                failure = exc
            failures += 1
            if failures >= SOCKET_FAILURES_BEFORE_POLLING:
                async for event in self._poll(job_id, last, deadline):
                    yield event
                return
            reconnects += 1
            if on_reconnect is not None:
                on_reconnect(reconnects, failure)
            await asyncio.sleep(_backoff(failures))

    async def _poll(self, job_id: str, last: int, deadline: float | None) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        while deadline is None or loop.time() < deadline:
            try:
                page = await self.events(job_id, after=last)
            except TransportError:
                await asyncio.sleep(1.0)
                continue
            for event in page["events"]:
                last = event["seq"]
                yield event
                if _finished(event):
                    return
            if not page["events"]:
                await asyncio.sleep(0.5)
        raise TimeoutError(f"job {job_id} did not finish in time")

    async def wait(self, job_id: str, *, timeout: float | None = None) -> dict:
        async for _ in self.follow(job_id, timeout=timeout):
            pass
        return await self.results(job_id)

    async def reviews(self, *, status: str | None = None, kind: str | None = None, job: str | None = None) -> dict:
        return await self.call(calls.reviews(status=status, kind=kind, job=job))

    async def review(self, review_id: str) -> dict:
        return await self.call(calls.review(review_id))

    async def decide(self, review_id: str, decision: str, **values: Any) -> dict:
        return await self.call(calls.decide(review_id, decision, **values))

    async def claim(self, review_id: str) -> dict:
        return await self.call(calls.claim(review_id))

    async def release(self, review_id: str) -> dict:
        return await self.call(calls.release(review_id))

    async def memory_store(self, text: str, **options: Any) -> dict:
        return await self.call(calls.memory_store(text, **options))

    async def memory_search(self, query: str, **options: Any) -> dict:
        return await self.call(calls.memory_search(query, **options))

    async def agents(self) -> dict:
        return await self.call(calls.agents())


__all__ = ["ApiError", "AsyncClient", "Client", "Event"]
