"""Fixtures for the client tests: sync and async clients against the real emulator, and fake services.

``client`` yields a sync ``SessionsClient`` or, for the "async" kind, an ``aio.SessionsClient`` driven through
``AsyncAdapter`` so one test body checks both clients against the same real pool.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import aca_kernel
import aca_kernel.aio

V1 = "2024-02-02-preview"
V2 = "2025-10-02-preview"
V2_202 = "2024-10-02-preview"


class AsyncAdapter:
    """Runs each coroutine method of an async client to completion on a private event loop."""

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def run(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return run

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") and name in ("_client", "_loop"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._client, name, value)


_SESSIONS: dict[tuple[str, str, str], str] = {}


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_client(kind: str):
    """Factory: ``make_client(endpoint, token, **kwargs)`` -> a sync client or an AsyncAdapter."""
    loop = asyncio.new_event_loop() if kind == "async" else None
    made: list[Any] = []

    def factory(endpoint: str, credential: Any = None, **kwargs: Any) -> Any:
        if kind == "sync":
            client = aca_kernel.SessionsClient(endpoint, credential, **kwargs)
        else:
            assert loop is not None
            client = AsyncAdapter(aca_kernel.aio.SessionsClient(endpoint, credential, **kwargs), loop)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()
    if loop is not None:
        loop.close()


@pytest.fixture
def client_for(pool, make_client, kind):
    """``client_for(api_version, fresh=False)``: a client on the shared pool, reusing one session per
    (kind, api-version, test module) so the suite starts few kernels; ``fresh=True`` gives a new session."""

    def factory(api_version: str, *, fresh: bool = False, **kwargs: Any) -> Any:
        key = (kind, api_version, "shared")
        if fresh or key not in _SESSIONS:
            sid = f"t-{uuid.uuid4()}"
            if not fresh:
                _SESSIONS[key] = sid
        else:
            sid = _SESSIONS[key]
        return make_client(pool.endpoint, pool.token, api_version=api_version, session_id=sid, **kwargs)

    return factory


# -- fault injection (only for what the emulator cannot produce) ------------------------------------------

class FakeService:
    """A scripted service for httpx.MockTransport: answers from a queue of responses, records requests."""

    def __init__(self, *responses: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]):
        self.queue = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if not self.queue:
            pytest.fail(f"unexpected request {request.method} {request.url}")
        item = self.queue.pop(0)
        if isinstance(item, Exception):
            raise item
        if callable(item):
            return item(request)
        return item

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


class NoSleep:
    """Records backoff sleeps instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class AsyncNoSleep(NoSleep):
    async def __call__(self, seconds: float) -> None:  # type: ignore[override]
        self.delays.append(seconds)


@pytest.fixture
def fake(make_client, kind):
    """``fake(*responses, **client_kwargs) -> (client, service, sleeps)``: a client of a scripted service."""

    def factory(*responses, **kwargs):
        service = FakeService(*responses)
        kwargs.setdefault("api_version", V1)
        client = make_client("https://pool.example/sp", "tok", transport=service.transport(), **kwargs)
        sleeps = AsyncNoSleep() if kind == "async" else NoSleep()
        client._sleep = sleeps
        return client, service, sleeps

    return factory


def v1_ok(result: Any = "", stdout: str = "", status: str = "Success") -> httpx.Response:
    return httpx.Response(200, json={"$id": "1", "properties": {"$id": "2", "status": status, "stdout": stdout,
                                                                "stderr": "", "result": result,
                                                                "executionTimeInMilliseconds": 1}})


def v1_listing(*names: str) -> httpx.Response:
    return httpx.Response(200, json={"value": [
        {"properties": {"filename": n, "size": 1, "lastModifiedTime": "2024-05-02T07:21:07.9922617Z"}}
        for n in names]})


def now() -> float:
    return time.time()


# -- observing real traffic ---------------------------------------------------------------------------------

class Recording(httpx.BaseTransport):
    """A real ``httpx.HTTPTransport`` that records every request it forwards (``.requests``), in order."""

    def __init__(self, **transport_options: Any) -> None:
        self.requests: list[httpx.Request] = []
        self._inner = httpx.HTTPTransport(**transport_options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncRecording(httpx.AsyncBaseTransport):
    """The async twin of ``Recording``, forwarding through a real ``httpx.AsyncHTTPTransport``."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
