"""The sync ``SessionsClient`` (httpx.Client). ``aio/_client.py`` is its line-for-line async twin."""

from __future__ import annotations

import io
import logging
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import httpx

from ._base import Call, SessionsClientBase, error_boundary
from ._config import CHUNK_SIZE
from ._exceptions import InvalidArgumentError, ResourceNotFoundError, ServiceRequestError
from ._http import client_options, detached
from ._models import ExecutionResult, ExecutionState, PoolMetadata, RemoteFile, SessionInfo
from ._validation import MAX_UPLOAD_BYTES, split_remote_name, upload_too_large, validate_upload_size

__all__ = ["Execution", "SessionsClient"]

logger = logging.getLogger("aca_kernel.client")

Progress = Callable[[int, "int | None"], None]


@dataclass
class UploadSource:
    """Where upload bytes come from; ``open()`` returns a binary file positioned at the start of the data."""

    default_name: str | None
    size: int | None
    open: Callable[[], BinaryIO]
    owned: bool  # close the file after the upload (we opened it)


def upload_source(source: Any) -> UploadSource:
    """Inspect (never read) an upload source: a path, bytes, or a binary file object."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise InvalidArgumentError(f"Cannot read {path!r}: {exc.strerror or exc}.") from exc
        if os.path.isdir(path):
            raise InvalidArgumentError(f"Cannot upload {path!r}: it is a directory; upload its files one by one.")
        return UploadSource(os.path.basename(path), size, lambda: open(path, "rb"), owned=True)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return UploadSource(None, len(data), lambda: io.BytesIO(data), owned=True)
    if isinstance(source, io.TextIOBase):
        raise InvalidArgumentError("Cannot upload a text-mode file: open it with mode 'rb'.")
    if callable(getattr(source, "read", None)):
        name = getattr(source, "name", None)
        default = os.path.basename(name) if isinstance(name, str) and name else None
        size, start = None, None
        try:
            if source.seekable():
                start = source.tell()
                size = source.seek(0, io.SEEK_END) - start
                source.seek(start)
        except (AttributeError, OSError, ValueError):
            size = None

        def reopen() -> BinaryIO:
            if start is not None:
                source.seek(start)
            return source

        return UploadSource(default, size, reopen, owned=False)
    raise InvalidArgumentError(
        f"Cannot upload a {type(source).__name__}: pass a path, bytes, or a binary file object.")


def multipart_parts(filename: str) -> tuple[str, bytes, bytes]:
    """The boundary, the head (part headers) and the tail of a one-file multipart/form-data body."""
    boundary = uuid.uuid4().hex
    quoted = filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{quoted}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return boundary, head, f"\r\n--{boundary}--\r\n".encode()


@dataclass
class UploadPlan:
    """Everything both clients need to send one upload: the call, the multipart framing, the opened files."""

    call: Call
    directory: str
    name: str
    src: UploadSource
    boundary: str
    head: bytes
    tail: bytes
    opened: list[BinaryIO]

    def open(self) -> tuple[BinaryIO, dict[str, str]]:
        """The source positioned at its start (again, on a retry) and the request headers."""
        file = self.src.open()
        self.opened.append(file)
        headers = {"Content-Type": f"multipart/form-data; boundary={self.boundary}"}
        if self.src.size is not None:
            headers["Content-Length"] = str(len(self.head) + self.src.size + len(self.tail))
        return file, headers

    def too_large(self) -> Exception:
        return upload_too_large(None, f"The upload {self.name!r}")

    def close(self) -> None:
        if self.src.owned:
            for file in self.opened:
                file.close()


def plan_upload(client: SessionsClientBase, source: Any, remote_name: str | None, path: str | None) -> UploadPlan:
    """Inspect the source, validate name and size (before any byte is sent), and build the call."""
    src = upload_source(source)
    name = remote_name if remote_name is not None else src.default_name
    if name is None:
        raise InvalidArgumentError("remote_name is required when uploading bytes or an unnamed file object.")
    directory, name = split_remote_name(name, path)
    validate_upload_size(src.size, f"The upload {name!r}")
    call, filename = client._upload_call(directory, name)
    boundary, head, tail = multipart_parts(filename)
    return UploadPlan(call, directory, name, src, boundary, head, tail, [])


def file_in_listing(files: list[RemoteFile], directory: str, name: str, session_id: str) -> RemoteFile:
    """One file's properties out of a directory listing (2024-02-02-preview has no metadata call)."""
    for file in files:
        if file.name == name:
            return file
    raise ResourceNotFoundError(f"File {f'{directory}/{name}' if directory else name!r} not found in session "
                                f"{session_id}.", status_code=404)


class _TooLarge(Exception):
    """Raised from inside the body generator when a stream of unknown size passes 128 MB."""


def _multipart_body(file: IO[bytes], head: bytes, tail: bytes, total: int | None,
                    progress: Progress | None) -> Iterator[bytes]:
    yield head
    done = 0
    while chunk := file.read(CHUNK_SIZE):
        done += len(chunk)
        if done > MAX_UPLOAD_BYTES:
            raise _TooLarge()
        yield chunk
        if progress is not None:
            progress(done, total)
    yield tail


class _Sink:
    """A download destination that can start over if the connection drops mid-body."""

    def __init__(self, destination: Any, default_name: str) -> None:
        self.buffer: io.BytesIO | None = None
        self.path: str | None = None
        self.file: Any = None
        self.start: int | None = None
        if destination is None:
            self.buffer = io.BytesIO()
            self.file = self.buffer
        elif isinstance(destination, (str, os.PathLike)):
            path = os.fspath(destination)
            self.path = os.path.join(path, default_name) if os.path.isdir(path) else path
            # Write next to the target and rename at the end, so a failed download never clobbers a good file.
            self.part = f"{self.path}.part-{uuid.uuid4().hex[:8]}"
            try:
                self.file = open(self.part, "wb")
            except OSError as exc:
                raise InvalidArgumentError(f"Cannot write {self.path!r}: {exc.strerror or exc}.") from exc
        elif isinstance(destination, io.TextIOBase):
            raise InvalidArgumentError("Cannot download into a text-mode file: open it with mode 'wb'.")
        elif callable(getattr(destination, "write", None)):
            self.file = destination
            try:
                self.start = destination.tell() if destination.seekable() else None
            except (AttributeError, OSError, ValueError):
                self.start = None
        else:
            raise InvalidArgumentError(
                f"Cannot download into a {type(destination).__name__}: pass a path, a writable binary file "
                f"object, or None for bytes.")

    @property
    def restartable(self) -> bool:
        return self.buffer is not None or self.path is not None or self.start is not None

    def reset(self) -> None:
        self.file.seek(self.start or 0)
        self.file.truncate()

    def finish(self, ok: bool) -> None:
        if self.path is None:
            return
        self.file.close()
        if ok:
            os.replace(self.part, self.path)
        elif os.path.exists(self.part):
            os.remove(self.part)


_STILL_RUNNING = "it keeps running in the session; call wait() again, or get_execution(id) later."


class Execution(ExecutionState):
    """An asynchronous execution started by ``SessionsClient.start_execution`` (or found by ``get_execution``)."""

    def __init__(self, client: SessionsClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = client

    def refresh(self) -> Execution:
        """Ask the service for the current state (one GET) and return self."""
        if not self.done:
            call = self._client._poll_call(self.id, self.session_id)
            _, result, raw = self._client._snapshot(call, self._client._request(call))
            self._update(result, raw)
        return self

    def wait(self, timeout: float | None = None) -> ExecutionResult:
        """Poll until the execution ends and return its result.

        ``timeout`` (seconds) defaults to the execution's own limit plus a margin; past it, ``ExecutionTimeout``
        is raised and the execution keeps running (wait again, or ``get_execution(id)`` later).
        """
        client = self._client
        deadline, waited = client._wait_deadline(self, timeout)
        attempt = 0
        while self._result is None:
            call, delay = client._next_poll(self.id, self.session_id, None, attempt, deadline, waited,
                                            _STILL_RUNNING)
            client._sleep(delay)
            attempt += 1
            _, result, raw = client._snapshot(call, client._request(call))
            self._update(result, raw)
        return self._result


class SessionsClient(SessionsClientBase):
    """Run code and move files in one Azure Container Apps dynamic session (sync).

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(endpoint, credential, api_version=api_version, session_id=session_id,
                         token_scope=token_scope, token_refresh_minutes=token_refresh_minutes, timeout=timeout,
                         max_retries=max_retries, retry_total_timeout=retry_total_timeout, aio=False,
                         verify=verify)
        self._sleep: Callable[[float], Any] = time.sleep
        self._http = httpx.Client(auth=self._auth, transport=transport, timeout=timeout,
                                  **client_options(self.endpoint, self._verify))

    # -- transport --------------------------------------------------------------------------------------
    def _send(self, call: Call, *, stream: bool = False,
              body: Callable[[], tuple[Any, dict[str, str]]] | None = None) -> httpx.Response:
        """Send with retries; return a 2xx response or raise the mapped error."""
        started, attempt, slept = time.monotonic(), 0, 0.0
        with error_boundary(call, self.endpoint, self._session_id):
            while True:
                content, headers = body() if body is not None else (None, {})
                request = self._build(self._http, call, content, headers)
                sent = time.monotonic()
                try:
                    response = self._http.send(request, stream=stream)
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
                    response.read()
                    response.close()
                    if delay is None:
                        raise self._response_error(call, response, attempt)
                    logger.info("%s %s -> %d; retry %d in %.1f s", call.method, call.path,
                                response.status_code, attempt + 1, delay)
                self._sleep(delay)
                attempt, slept = attempt + 1, slept + delay

    def _request(self, call: Call) -> httpx.Response:
        # Not streamed: a body that breaks half-way then fails inside send(), where the retry loop sees it.
        return self._send(call)

    # -- operations ----------------------------------------------------------------------------------------
    def execute(self, code: str, *, timeout: float | None = None, sanitize_input: bool = False) -> ExecutionResult:
        """Run ``code`` in the session. A failing cell is a result with status "failed", not an error.

        ``sanitize_input=True`` first strips surrounding whitespace and a Markdown code fence (model-written code).
        """
        call = self._execute_call(code, timeout, sanitize_input=sanitize_input)
        deadline = time.monotonic() + (call.read_timeout or 0)
        session_id = self._session_id
        response = self._request(call)
        outcome = self._parse_execution(call, response)
        attempt = 0
        while isinstance(outcome, str):  # 202 / Running: poll until the service reports an end state
            poll, delay = self._next_poll(outcome, session_id, response, attempt, deadline, call.read_timeout or 0,
                                          "it was not re-sent and may still finish.")
            self._sleep(delay)
            attempt += 1
            response = self._request(poll)
            outcome = self._parse_execution(poll, response)
        return outcome

    def start_execution(self, code: str, *, timeout: float | None = None,
                        sanitize_input: bool = False) -> Execution:
        """Start ``code`` without waiting for it (2024-10-02-preview and later); ``Execution.wait()`` gets the
        result. Never re-sent once it may have reached the service."""
        call = self._execute_call(code, timeout, sanitize_input=sanitize_input, asynchronous=True)
        session_id = self._session_id
        try:
            response = self._request(call)
        except ServiceRequestError as exc:
            if not exc.may_have_executed:
                raise
            raise self._lost_start(call, exc) from exc
        execution_id, result, raw = self._snapshot(call, response)
        return Execution(self, execution_id, session_id, result, raw,
                         timeout=float(call.json["timeoutInSeconds"]))

    def get_execution(self, execution_id: str) -> Execution:
        """An execution of this session by id, as the service reports it now (2024-10-02-preview and later)."""
        call = self._get_execution_call(execution_id)
        _, result, raw = self._snapshot(call, self._request(call))
        return Execution(self, execution_id, self._session_id, result, raw)

    def upload_file(self, source: str | os.PathLike[str] | bytes | BinaryIO, remote_name: str | None = None, *,
                    path: str | None = None, progress: Progress | None = None) -> RemoteFile:
        """Upload a local path, bytes or binary file object to /mnt/data (streamed, at most 128 MB)."""
        plan = plan_upload(self, source, remote_name, path)

        def body() -> tuple[Any, dict[str, str]]:
            file, headers = plan.open()
            return _multipart_body(file, plan.head, plan.tail, plan.src.size, progress), headers

        try:
            response = self._send(plan.call, body=body)
        except _TooLarge as exc:
            raise plan.too_large() from exc
        finally:
            plan.close()
        return self._parse_upload(plan.call, response, plan.directory)

    def download_file(self, remote_name: str, destination: str | os.PathLike[str] | BinaryIO | None = None, *,
                      path: str | None = None, progress: Progress | None = None) -> bytes | int:
        """Stream a file from /mnt/data. Returns bytes when ``destination`` is None, else the bytes written."""
        call = self._download_call(remote_name, path)
        sink = _Sink(destination, call.target.rsplit("/", 1)[-1] if call.target else "download")
        ok = False
        try:
            done = self._stream_into(call, sink, progress)
            ok = True
        finally:
            sink.finish(ok)
        return sink.buffer.getvalue() if sink.buffer is not None else done

    def _stream_into(self, call: Call, sink: _Sink, progress: Progress | None) -> int:
        started, attempt, slept = time.monotonic(), 0, 0.0
        while True:
            response = self._send(call, stream=True)
            total = int(response.headers["content-length"]) if response.headers.get("content-length") else None
            done = 0
            try:
                with error_boundary(call, self.endpoint, self._session_id):
                    try:
                        for chunk in response.iter_bytes(CHUNK_SIZE):
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
                response.close()
            sink.reset()
            self._sleep(delay)
            attempt, slept = attempt + 1, slept + delay

    def list_files(self, *, path: str | None = None, recursive: bool = False) -> list[RemoteFile]:
        """List a directory under /mnt/data (``recursive`` needs 2025-10-02-preview)."""
        directory = self._directory(path)
        call = self._list_call(directory, recursive)
        return self._parse_list(call, self._request(call), directory, recursive)

    def get_file_properties(self, remote_name: str, *, path: str | None = None) -> RemoteFile:
        """Size, type and modification time of one file (from the listing on 2024-02-02-preview)."""
        directory, name = split_remote_name(remote_name, path)
        if self._settings.is_v2:
            call = self._properties_call(directory, name)
            return self._parse_upload(call, self._request(call), directory)
        return file_in_listing(self.list_files(path=directory), directory, name, self._session_id)

    def delete_file(self, remote_name: str, *, path: str | None = None) -> None:
        """Delete a file; on 2024-02-02-preview (no delete endpoint) by running a fixed snippet in the session."""
        directory, name = split_remote_name(remote_name, path)
        call = self._delete_file_call(directory, name)
        if self._settings.is_v2:
            self._request(call)
            return
        self._v1_delete_outcome(call, self.execute(self._v1_delete_code(directory, name)))

    def get_session(self) -> SessionInfo:
        """The session's identifier and timestamps (2025-02-02-preview and later)."""
        call = self._session_call("GET")
        return self._parse_session(call, self._request(call))

    def delete_session(self) -> None:
        """Delete the session and its files (2025-02-02-preview and later); an unknown session counts as deleted."""
        call = self._session_call("DELETE")
        try:
            self._request(call)
        except ResourceNotFoundError:
            pass

    def list_sessions(self) -> list[SessionInfo]:
        """Every session of the pool, all pages (2025-02-02-preview and later)."""
        sessions: list[SessionInfo] = []
        seen: set[tuple[tuple[str, str], ...]] = set()
        page: tuple[tuple[str, str], ...] | None = ()
        while page is not None:
            call = self._list_sessions_call(page)
            items, next_link = self._parse_session_page(call, self._request(call))
            sessions.extend(items)
            page = self._next_page(next_link, seen)
        return sessions

    def get_pool_metadata(self) -> PoolMetadata:
        """The pool's runtime, pre-installed packages and Jupyter kernel (2025-02-02-preview and later)."""
        call = self._metadata_call()
        return self._parse_metadata(call, self._request(call))

    # -- lifetime ------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()
        self._auth.close()

    def __enter__(self) -> SessionsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
