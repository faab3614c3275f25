"""The async ``SessionsClient`` (httpx.AsyncClient), line-for-line parallel to ``aca_kernel._client``."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any, BinaryIO

import httpx

from .._base import Call, SessionsClientBase, error_boundary
from .._client import _STILL_RUNNING, Progress, _Sink, _TooLarge, file_in_listing, plan_upload
from .._config import CHUNK_SIZE
from .._exceptions import ResourceNotFoundError, ServiceRequestError
from .._http import client_options, detached
from .._models import ExecutionResult, ExecutionState, PoolMetadata, RemoteFile, SessionInfo
from .._validation import MAX_UPLOAD_BYTES, split_remote_name

__all__ = ["Execution", "SessionsClient"]

logger = logging.getLogger("aca_kernel.client")


async def _multipart_body(file: IO[bytes], head: bytes, tail: bytes, total: int | None,
                          progress: Progress | None) -> AsyncIterator[bytes]:
    yield head
    done = 0
    # File reads go to a worker thread so a slow disk never stalls the event loop.
    while chunk := await asyncio.to_thread(file.read, CHUNK_SIZE):
        done += len(chunk)
        if done > MAX_UPLOAD_BYTES:
            raise _TooLarge()
        yield chunk
        if progress is not None:
            progress(done, total)
    yield tail


class Execution(ExecutionState):
    """An asynchronous execution started by ``aio.SessionsClient.start_execution`` (or ``get_execution``)."""

    def __init__(self, client: SessionsClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = client

    async def refresh(self) -> Execution:
        """Ask the service for the current state (one GET) and return self."""
        if not self.done:
            call = self._client._poll_call(self.id, self.session_id)
            _, result, raw = self._client._snapshot(call, await self._client._request(call))
            self._update(result, raw)
        return self

    async def wait(self, timeout: float | None = None) -> ExecutionResult:
        """Poll until the execution ends and return its result (see the sync ``Execution.wait``)."""
        client = self._client
        deadline, waited = client._wait_deadline(self, timeout)
        attempt = 0
        while self._result is None:
            call, delay = client._next_poll(self.id, self.session_id, None, attempt, deadline, waited,
                                            _STILL_RUNNING)
            await client._sleep(delay)
            attempt += 1
            _, result, raw = client._snapshot(call, await client._request(call))
            self._update(result, raw)
        return self._result


class SessionsClient(SessionsClientBase):
    """Run code and move files in one Azure Container Apps dynamic session (async).

    ``SessionsClient(endpoint, credential, *, api_version=..., session_id=...)``; see docs/client.md.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        credential: Any = None,
        *,
        api_version: str | None = None,
        session_id: str | None = None,
        token_scope: str | None = None,
        token_refresh_minutes: float = 5.0,
        timeout: float = 30.0,
        max_retries: int = 4,
        retry_total_timeout: float = 60.0,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(endpoint, credential, api_version=api_version, session_id=session_id,
                         token_scope=token_scope, token_refresh_minutes=token_refresh_minutes, timeout=timeout,
                         max_retries=max_retries, retry_total_timeout=retry_total_timeout, aio=True,
                         verify=verify)
        self._sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        self._http = httpx.AsyncClient(auth=self._auth, transport=transport, timeout=timeout,
                                       **client_options(self.endpoint, self._verify))

    # -- transport --------------------------------------------------------------------------------------
    async def _send(self, call: Call, *, stream: bool = False,
                    body: Callable[[], tuple[Any, dict[str, str]]] | None = None) -> httpx.Response:
        """Send with retries; return a 2xx response or raise the mapped error."""
        started, attempt, slept = time.monotonic(), 0, 0.0
        with error_boundary(call, self.endpoint, self._session_id):
            while True:
                content, headers = body() if body is not None else (None, {})
                request = self._build(self._http, call, content, headers)
                sent = time.monotonic()
                try:
                    response = await self._http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    delay = self._retry_delay(call, attempt, started, slept=slept, exc=exc)
                    if delay is None:
                        raise
                    logger.info("%s %s failed (%s); retry %d in %.1f s", call.method, call.path,
                                type(exc).__name__, attempt + 1, delay)
                else:
                    self._log(call, response, sent)
                    if response.is_success:
                        return response if stream else detached(response)
                    delay = self._retry_delay(call, attempt, started, slept=slept, response=response)
                    await response.aread()
                    await response.aclose()
                    if delay is None:
                        raise self._response_error(call, response, attempt)
                    logger.info("%s %s -> %d; retry %d in %.1f s", call.method, call.path,
                                response.status_code, attempt + 1, delay)
                await self._sleep(delay)
                attempt, slept = attempt + 1, slept + delay

    async def _request(self, call: Call) -> httpx.Response:
        # Not streamed: a body that breaks half-way then fails inside send(), where the retry loop sees it.
        return await self._send(call)

    # -- operations ----------------------------------------------------------------------------------------
    async def execute(self, code: str, *, timeout: float | None = None,
                      sanitize_input: bool = False) -> ExecutionResult:
        """Run ``code`` in the session. A failing cell is a result with status "failed", not an error.

        ``sanitize_input=True`` first strips surrounding whitespace and a Markdown code fence (model-written code).
        """
        call = self._execute_call(code, timeout, sanitize_input=sanitize_input)
        deadline = time.monotonic() + (call.read_timeout or 0)
        session_id = self._session_id
        response = await self._request(call)
        outcome = self._parse_execution(call, response)
        attempt = 0
        while isinstance(outcome, str):  # 202 / Running: poll until the service reports an end state
            poll, delay = self._next_poll(outcome, session_id, response, attempt, deadline, call.read_timeout or 0,
                                          "it was not re-sent and may still finish.")
            await self._sleep(delay)
            attempt += 1
            response = await self._request(poll)
            outcome = self._parse_execution(poll, response)
        return outcome

    async def start_execution(self, code: str, *, timeout: float | None = None,
                              sanitize_input: bool = False) -> Execution:
        """Start ``code`` without waiting for it (2024-10-02-preview and later); ``await Execution.wait()``
        gets the result. Never re-sent once it may have reached the service."""
        call = self._execute_call(code, timeout, sanitize_input=sanitize_input, asynchronous=True)
        session_id = self._session_id
        try:
            response = await self._request(call)
        except ServiceRequestError as exc:
            if not exc.may_have_executed:
                raise
            raise self._lost_start(call, exc) from exc
        execution_id, result, raw = self._snapshot(call, response)
        return Execution(self, execution_id, session_id, result, raw,
                         timeout=float(call.json["timeoutInSeconds"]))

    async def get_execution(self, execution_id: str) -> Execution:
        """An execution of this session by id, as the service reports it now (2024-10-02-preview and later)."""
        call = self._get_execution_call(execution_id)
        _, result, raw = self._snapshot(call, await self._request(call))
        return Execution(self, execution_id, self._session_id, result, raw)

    async def upload_file(self, source: str | os.PathLike[str] | bytes | BinaryIO, remote_name: str | None = None,
                          *, path: str | None = None, progress: Progress | None = None) -> RemoteFile:
        """Upload a local path, bytes or binary file object to /mnt/data (streamed, at most 128 MB)."""
        plan = plan_upload(self, source, remote_name, path)

        def body() -> tuple[Any, dict[str, str]]:
            file, headers = plan.open()
            return _multipart_body(file, plan.head, plan.tail, plan.src.size, progress), headers

        try:
            response = await self._send(plan.call, body=body)
        except _TooLarge as exc:
            raise plan.too_large() from exc
        finally:
            plan.close()
        return self._parse_upload(plan.call, response, plan.directory)

    async def download_file(self, remote_name: str, destination: str | os.PathLike[str] | BinaryIO | None = None,
                            *, path: str | None = None, progress: Progress | None = None) -> bytes | int:
        """Stream a file from /mnt/data. Returns bytes when ``destination`` is None, else the bytes written."""
        call = self._download_call(remote_name, path)
        sink = _Sink(destination, call.target.rsplit("/", 1)[-1] if call.target else "download")
        ok = False
        try:
            done = await self._stream_into(call, sink, progress)
            ok = True
        finally:
            sink.finish(ok)
        return sink.buffer.getvalue() if sink.buffer is not None else done

    async def _stream_into(self, call: Call, sink: _Sink, progress: Progress | None) -> int:
        started, attempt, slept = time.monotonic(), 0, 0.0
        while True:
            response = await self._send(call, stream=True)
            total = int(response.headers["content-length"]) if response.headers.get("content-length") else None
            done = 0
            try:
                with error_boundary(call, self.endpoint, self._session_id):
                    try:
                        async for chunk in response.aiter_bytes(CHUNK_SIZE):
                            sink.file.write(chunk)
                            done += len(chunk)
                            if progress is not None:
                                progress(done, total)
                        return done
                    except httpx.TransportError as exc:
                        delay = self._retry_delay(call, attempt, started, slept=slept, exc=exc) if sink.restartable else None
                        if delay is None:
                            raise
                        logger.info("download of %s broke after %d bytes (%s); restarting", call.target, done,
                                    type(exc).__name__)
            finally:
                await response.aclose()
            sink.reset()
            await self._sleep(delay)
            attempt, slept = attempt + 1, slept + delay

    async def list_files(self, *, path: str | None = None, recursive: bool = False) -> list[RemoteFile]:
        """List a directory under /mnt/data (``recursive`` needs 2025-10-02-preview)."""
        directory = self._directory(path)
        call = self._list_call(directory, recursive)
        return self._parse_list(call, await self._request(call), directory, recursive)

    async def get_file_properties(self, remote_name: str, *, path: str | None = None) -> RemoteFile:
        """Size, type and modification time of one file (from the listing on 2024-02-02-preview)."""
        directory, name = split_remote_name(remote_name, path)
        if self._settings.is_v2:
            call = self._properties_call(directory, name)
            return self._parse_upload(call, await self._request(call), directory)
        return file_in_listing(await self.list_files(path=directory), directory, name, self._session_id)

    async def delete_file(self, remote_name: str, *, path: str | None = None) -> None:
        """Delete a file; on 2024-02-02-preview (no delete endpoint) by running a fixed snippet in the session."""
        directory, name = split_remote_name(remote_name, path)
        call = self._delete_file_call(directory, name)
        if self._settings.is_v2:
            await self._request(call)
            return
        self._v1_delete_outcome(call, await self.execute(self._v1_delete_code(directory, name)))

    async def get_session(self) -> SessionInfo:
        """The session's identifier and timestamps (2025-02-02-preview and later)."""
        call = self._session_call("GET")
        return self._parse_session(call, await self._request(call))

    async def delete_session(self) -> None:
        """Delete the session and its files (2025-02-02-preview and later); an unknown session counts as deleted."""
        call = self._session_call("DELETE")
        try:
            await self._request(call)
        except ResourceNotFoundError:
            pass

    async def list_sessions(self) -> list[SessionInfo]:
        """Every session of the pool, all pages (2025-02-02-preview and later)."""
        sessions: list[SessionInfo] = []
        seen: set[tuple[tuple[str, str], ...]] = set()
        page: tuple[tuple[str, str], ...] | None = ()
        while page is not None:
            call = self._list_sessions_call(page)
            items, next_link = self._parse_session_page(call, await self._request(call))
            sessions.extend(items)
            page = self._next_page(next_link, seen)
        return sessions

    async def get_pool_metadata(self) -> PoolMetadata:
        """The pool's runtime, pre-installed packages and Jupyter kernel (2025-02-02-preview and later)."""
        call = self._metadata_call()
        return self._parse_metadata(call, await self._request(call))

    # -- lifetime ------------------------------------------------------------------------------------------
    async def close(self) -> None:
        await self._http.aclose()
        await self._auth.aclose()

    async def __aenter__(self) -> SessionsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
