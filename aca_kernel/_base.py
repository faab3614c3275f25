"""The request/response layer shared by the sync and async clients. It does no network I/O.

It builds URLs, query strings and bodies for both API generations, parses replies into models, maps every
failure to the ``ACASessionsError`` tree at one boundary (``error_boundary``), and decides retries.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import ssl
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from . import _models
from ._auth import make_auth
from ._config import (
    ASYNC_EXECUTION_API_VERSIONS,
    DEFAULT_EXECUTION_TIMEOUT,
    EXECUTE_READ_MARGIN,
    RECURSIVE_API_VERSIONS,
    SESSION_API_VERSIONS,
    USER_AGENT,
    public_endpoint,
    resolve_settings,
)
from ._exceptions import (
    ACASessionsError,
    ExecutionTimeout,
    HttpResponseError,
    InvalidArgumentError,
    MalformedResponseError,
    NotSupportedError,
    ResourceNotFoundError,
    ServiceRequestError,
    mask_bearer,
    status_error,
)
from ._validation import (
    normalize_directory,
    sanitize_code,
    split_remote_name,
    v1_delete_snippet,
    validate_session_id,
)

__all__ = ["Call", "SessionsClientBase", "error_boundary", "ssl_verify"]

logger = logging.getLogger("aca_kernel.client")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Only these prove the request never left this machine, so only they make a non-idempotent call retryable.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_BACKOFF_BASE = 0.5
_BACKOFF_MAX = 30.0
_REQUEST_ID_HEADERS = ("x-ms-request-id", "apim-request-id", "x-ms-client-request-id")
_POLL_FIRST, _POLL_MAX = 0.25, 2.0
# Pages of GET listSessions followed at most (300 sessions each; a pool holds at most 600): a guard against a
# service whose nextLink never ends.
_MAX_PAGES = 100


@dataclass(frozen=True)
class Call:
    """One logical operation: what to send, and how to treat failures."""

    op: str                                  # "execute", "upload", "download", "list files", ...
    method: str
    path: str                                # relative to the endpoint, already percent-encoded
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    idempotent: bool = True
    target: str | None = None                # the remote file, for messages
    read_timeout: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    kind: str = "File"                       # what `target` is, for a 404's message


def request_id(response: httpx.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        if response.headers.get(name):
            return response.headers[name]
    return None


def _excerpt(text: str, secrets: list[str], limit: int = 200) -> str:
    text = mask_bearer(text, "<redacted>")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def retry_after(response: httpx.Response | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def ssl_verify(verify: Any) -> bool | ssl.SSLContext:
    """The ``verify=`` argument as httpx wants it: True (system trust, honouring SSL_CERT_FILE/SSL_CERT_DIR),
    False, an ``ssl.SSLContext``, or a CA bundle path (file or directory) turned into a context."""
    if isinstance(verify, (bool, ssl.SSLContext)):
        return verify
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise InvalidArgumentError(f"verify={path!r}: no CA bundle there; pass the path of a PEM file (the "
                                       f"local pool prints it as `ca bundle: <path>`) or True.")
        try:
            if os.path.isdir(path):
                return ssl.create_default_context(capath=path)
            return ssl.create_default_context(cafile=path)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise InvalidArgumentError(f"verify={path!r} is not a readable PEM CA bundle ({exc}).") from exc
    raise InvalidArgumentError(
        f"verify must be True, False, a CA bundle path or an ssl.SSLContext, not {type(verify).__name__}.")


def _tls_failure(exc: BaseException) -> str | None:
    """Why the server's certificate was refused, when that is what broke the connection."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or str(current)
        current = current.__cause__ or current.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip() or "verify failed"
    return None


@contextmanager
def error_boundary(call: Call, endpoint: str, session_id: str) -> Iterator[None]:
    """The one place where httpx transport errors become ``ACASessionsError`` (chained)."""
    try:
        yield
    except ACASessionsError:
        raise
    except httpx.TimeoutException as exc:
        if call.op == "execute" and not isinstance(exc, NOT_SENT_ERRORS):
            raise ExecutionTimeout(
                f"No reply to the execution within {call.read_timeout:.0f} s in session {session_id}: the code "
                f"may have run (or may still be running) and was not re-sent; check its effects before "
                f"running it again.",
                may_have_executed=True,
            ) from exc
        raise ServiceRequestError(_transport_message(call, exc, endpoint, session_id),
                                  may_have_executed=_may_have_run(call, exc)) from exc
    except httpx.TransportError as exc:
        raise ServiceRequestError(_transport_message(call, exc, endpoint, session_id),
                                  may_have_executed=_may_have_run(call, exc)) from exc
    except httpx.DecodingError as exc:
        raise MalformedResponseError(f"The reply to {call.op} could not be decoded ({exc}); try again.") from exc
    except httpx.HTTPError as exc:
        raise ServiceRequestError(f"The {call.op} request failed ({type(exc).__name__}: {exc}).",
                                  may_have_executed=call.op == "execute") from exc


def _may_have_run(call: Call, exc: Exception) -> bool:
    return call.op == "execute" and not isinstance(exc, NOT_SENT_ERRORS)


def _transport_message(call: Call, exc: Exception, endpoint: str, session_id: str) -> str:
    tls = _tls_failure(exc)
    if tls is not None:
        return (f"The TLS certificate of {public_endpoint(endpoint)} is not trusted ({tls}); for a pool with "
                f"its own CA (the local pool prints `ca bundle: <path>`), pass verify=\"<path>\" or set "
                f"SSL_CERT_FILE to that file.")
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if _may_have_run(call, exc):
        return (f"The connection failed after the execution was sent to session {session_id} ({detail}): "
                f"the code may have run and was not re-sent; check its effects before running it again.")
    if isinstance(exc, NOT_SENT_ERRORS):
        return (f"Could not connect to {public_endpoint(endpoint)} for {call.op} ({detail}); check the endpoint "
                f"and the network.")
    return f"The connection failed during {call.op} ({detail}); try again."


class SessionsClientBase:
    """Settings, request building, reply parsing and retry decisions; the subclasses add the I/O."""

    def __init__(
        self,
        endpoint: str | None,
        credential: Any,
        *,
        api_version: str | None,
        session_id: str | None,
        token_scope: str | None,
        token_refresh_minutes: float,
        timeout: float,
        max_retries: int,
        retry_total_timeout: float,
        aio: bool,
        verify: Any = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._settings = resolve_settings(endpoint, api_version=api_version, session_id=session_id,
                                          token_scope=token_scope, env=env)
        self._session_id = self._settings.session_id
        if not token_refresh_minutes >= 0:
            raise InvalidArgumentError(
                f"token_refresh_minutes must be 0 or more minutes, got {token_refresh_minutes!r}.")
        # Renew a cached token this many minutes before it expires (the default: 5).
        self._auth = make_auth(credential, self._settings.token_scope, token_refresh_minutes * 60.0, env, aio=aio)
        self._timeout = timeout
        self._max_retries = max(0, int(max_retries))
        self._retry_total_timeout = retry_total_timeout
        self._random = random.random  # injectable with _sleep for deterministic retry tests
        self._headers = {"User-Agent": USER_AGENT}
        self._verify = ssl_verify(verify)

    # -- public settings --------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    @property
    def api_version(self) -> str:
        return self._settings.api_version

    @property
    def session_id(self) -> str:
        return self._session_id

    @session_id.setter
    def session_id(self, value: str) -> None:
        self._session_id = validate_session_id(value)

    def new_session(self, session_id: str | None = None) -> str:
        """Switch to another session identifier (a fresh uuid4 by default) and return it."""
        self.session_id = str(uuid.uuid4()) if session_id is None else session_id
        return self._session_id

    def __repr__(self) -> str:
        return (f"<{type(self).__module__.split('._')[0]}.{type(self).__name__} "
                f"endpoint={public_endpoint(self.endpoint)!r} "
                f"api_version={self.api_version!r} session_id={self._session_id!r}>")

    # -- request building ---------------------------------------------------------------------------------
    def _params(self, *extra: tuple[str, str], session_id: str | None = None) -> tuple[tuple[str, str], ...]:
        return (*self._settings.base_query, ("identifier", session_id or self._session_id),
                ("api-version", self._settings.api_version), *extra)

    def _pool_params(self, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        """Pool-level calls (listSessions, metadata) name no session."""
        return (*self._settings.base_query, ("api-version", self._settings.api_version), *extra)

    def _require(self, operation: str, versions: tuple[str, ...]) -> None:
        """NotSupportedError naming the first api-version that has ``operation``."""
        if self.api_version not in versions:
            raise NotSupportedError(
                f"{operation} needs api-version {versions[0]} or later; this client uses {self.api_version} "
                f"(pass api_version=\"{versions[-1]}\").")

    def _build(self, client: httpx.Client | httpx.AsyncClient, call: Call, content: Any = None,
               headers: Mapping[str, str] | None = None) -> httpx.Request:
        timeout: Any = httpx.Timeout(self._timeout, read=call.read_timeout) if call.read_timeout else self._timeout
        return client.build_request(call.method, self._settings.base_url + call.path, params=list(call.params),
                                    json=call.json, content=content,
                                    headers={**self._headers, **call.headers, **(headers or {})}, timeout=timeout)

    def _execute_call(self, code: str, timeout: float | None, *, sanitize_input: bool = False,
                      asynchronous: bool = False) -> Call:
        if not isinstance(code, str):
            raise InvalidArgumentError(f"code must be a str, got {type(code).__name__}.")
        if asynchronous:
            self._require("start_execution()", ASYNC_EXECUTION_API_VERSIONS)
        if sanitize_input:
            code = sanitize_code(code)
        seconds = DEFAULT_EXECUTION_TIMEOUT if timeout is None else timeout
        if seconds <= 0:
            raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        read = seconds + EXECUTE_READ_MARGIN
        # The service takes whole seconds and refuses 0: round a fraction up rather than send an invalid limit.
        whole = max(1, math.ceil(seconds))
        if asynchronous:
            # The service answers at once (Running); an operation-id of our own names the execution, so a
            # reply lost on the way back still leaves an id to ask about (get_execution) instead of re-sending.
            body = {"codeInputType": "Inline", "executionType": "Asynchronous", "code": code,
                    "timeoutInSeconds": whole}
            return Call("execute", "POST", "executions", self._params(), json=body, idempotent=False,
                        read_timeout=self._timeout, headers={"operation-id": str(uuid.uuid4())})
        if self._settings.is_v2:
            body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": code,
                    "timeoutInSeconds": whole}
            return Call("execute", "POST", "executions", self._params(), json=body, idempotent=False,
                        read_timeout=read)
        props = {"codeInputType": "inline", "executionType": "synchronous", "code": code,
                 "timeoutInSeconds": whole}
        return Call("execute", "POST", "code/execute", self._params(), json={"properties": props},
                    idempotent=False, read_timeout=read)

    def _next_poll(self, execution_id: str, session_id: str, response: httpx.Response | None, attempt: int,
                   deadline: float, waited: float, hint: str) -> tuple[Call, float]:
        """The poll of a running execution and the wait before it, or ExecutionTimeout past the deadline."""
        interval = min(_POLL_FIRST * 2 ** min(attempt, 8), _POLL_MAX)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ExecutionTimeout(
                f"Execution {execution_id} in session {session_id} was still running after {waited:.3g} s; "
                f"{hint}", may_have_executed=True)
        # The last poll lands on the deadline itself: an execution that ends just in time is not missed.
        delay = min(retry_after(response, time.time()) or interval, _POLL_MAX, remaining)
        return self._poll_call(execution_id, session_id), delay

    def _poll_call(self, execution_id: str, session_id: str | None = None) -> Call:
        if not isinstance(execution_id, str) or not execution_id:
            raise InvalidArgumentError(f"Invalid execution id {execution_id!r}: expected a non-empty string.")
        return Call("get execution", "GET", f"executions/{quote(execution_id, safe='')}",
                    self._params(session_id=session_id), target=execution_id, kind="Execution")

    @staticmethod
    def _lost_start(call: Call, exc: ServiceRequestError) -> ServiceRequestError:
        """The error for a start_execution whose reply never came: it names the id to ask about."""
        operation_id = call.headers.get("operation-id")
        return type(exc)(f"{exc} Its operation id is {operation_id}: get_execution({operation_id!r}) tells "
                         f"whether it started.", may_have_executed=True)

    def _get_execution_call(self, execution_id: str) -> Call:
        self._require("get_execution()", ASYNC_EXECUTION_API_VERSIONS)
        return self._poll_call(execution_id)

    def _wait_deadline(self, state: _models.ExecutionState, timeout: float | None) -> tuple[float, float]:
        """(monotonic deadline, seconds) for Execution.wait: by default the execution's own limit plus margin."""
        if timeout is None:
            timeout = (state._timeout or DEFAULT_EXECUTION_TIMEOUT) + EXECUTE_READ_MARGIN
        if not timeout >= 0:
            raise InvalidArgumentError(f"timeout must be 0 or more seconds, got {timeout!r}.")
        return time.monotonic() + timeout, timeout

    def _snapshot(self, call: Call, response: httpx.Response) -> tuple[str, _models.ExecutionResult | None, dict]:
        """(execution id, result or None while running, raw body) from POST/GET executions."""
        outcome = self._parse_execution(call, response)
        body = self._json(call, response)
        if isinstance(outcome, str):
            return outcome, None, body
        execution_id = outcome.execution_id or str(call.headers.get("operation-id") or call.target or "")
        if not execution_id:
            raise self._malformed(call, response, "execution without an id")
        return execution_id, outcome, body

    # -- pool-level calls -----------------------------------------------------------------------------------
    def _list_sessions_call(self, page: tuple[tuple[str, str], ...] = ()) -> Call:
        self._require("list_sessions()", SESSION_API_VERSIONS)
        return Call("list sessions", "GET", "listSessions", self._pool_params(*page))

    def _metadata_call(self) -> Call:
        self._require("get_pool_metadata()", SESSION_API_VERSIONS)
        return Call("get pool metadata", "GET", "metadata", self._pool_params())

    def _parse_session_page(self, call: Call, response: httpx.Response) -> tuple[list[_models.SessionInfo],
                                                                                   str | None]:
        return self._parse(call, response, _models.session_page)

    def _parse_metadata(self, call: Call, response: httpx.Response) -> _models.PoolMetadata:
        return self._parse(call, response, _models.pool_metadata)

    @staticmethod
    def _next_page(next_link: str | None, seen: set[tuple[tuple[str, str], ...]]) -> tuple[tuple[str, str], ...] | None:
        """The paging parameters (``skip=300``, a continuation token) of ``nextLink``, or None at the end.

        Only its paging parameters are taken: the request goes to our own endpoint, so the bearer token is never
        sent to a host named in a reply.
        """
        if not next_link or len(seen) >= _MAX_PAGES:
            return None
        page = tuple((k, v) for k, v in parse_qsl(urlsplit(next_link).query, keep_blank_values=True)
                     if k.lower() not in ("api-version", "identifier"))
        if not page or page in seen:
            return None
        seen.add(page)
        return page

    def _file_params(self, directory: str) -> tuple[tuple[str, str], ...]:
        return self._params(("path", directory)) if directory else self._params()

    def _upload_call(self, directory: str, name: str) -> tuple[Call, str]:
        """The call and the multipart file name for an upload."""
        if self._settings.is_v2:
            return Call("upload", "POST", "files", self._file_params(directory), idempotent=False,
                        target=name), name
        rel = f"{directory}/{name}" if directory else name
        return Call("upload", "POST", "files/upload", self._params(), idempotent=False, target=rel), rel

    def _download_call(self, remote_name: str, path: str | None) -> Call:
        directory, name = split_remote_name(remote_name, path)
        rel = f"{directory}/{name}" if directory else name
        if self._settings.is_v2:
            return Call("download", "GET", f"files/{quote(name, safe='')}/content", self._file_params(directory),
                        target=rel)
        return Call("download", "GET", f"files/content/{quote(rel, safe='/')}", self._params(), target=rel)

    def _list_call(self, directory: str, recursive: bool) -> Call:
        if not self._settings.is_v2:
            return Call("list files", "GET", "files", self._params())
        extra: tuple[tuple[str, str], ...] = (("path", directory),) if directory else ()
        if recursive:
            self._require("list_files(recursive=True)", RECURSIVE_API_VERSIONS)
            extra += (("recursive", "true"),)
        return Call("list files", "GET", "files", self._params(*extra))

    def _properties_call(self, directory: str, name: str) -> Call:
        rel = f"{directory}/{name}" if directory else name
        return Call("get file properties", "GET", f"files/{quote(name, safe='')}", self._file_params(directory),
                    target=rel)

    def _delete_file_call(self, directory: str, name: str) -> Call:
        rel = f"{directory}/{name}" if directory else name
        return Call("delete file", "DELETE", f"files/{quote(name, safe='')}", self._file_params(directory),
                    target=rel)

    def _session_call(self, method: str) -> Call:
        op = "get session" if method == "GET" else "delete session"
        self._require(f"{op.replace(' ', '_')}()", SESSION_API_VERSIONS)
        return Call(op, method, "session", self._params())

    # -- retry decisions ----------------------------------------------------------------------------------
    def _retry_delay(self, call: Call, attempt: int, started: float, *, slept: float = 0.0,
                     response: httpx.Response | None = None, exc: Exception | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when this failure is final.

        ``slept`` is the backoff already taken: it counts against retry_total_timeout even when the sleep
        function returned early (tests inject one that does not wait).
        """
        if attempt >= self._max_retries:
            return None
        if exc is not None:
            if _tls_failure(exc) is not None:
                return None  # an untrusted certificate stays untrusted
            retryable = isinstance(exc, NOT_SENT_ERRORS) or (call.idempotent and isinstance(exc, httpx.TransportError))
        else:
            retryable = call.idempotent and response is not None and response.status_code in RETRY_STATUSES
        if not retryable:
            return None
        now = time.monotonic()
        delay = retry_after(response, time.time())
        if delay is None:
            # Full jitter: spreads simultaneous clients over the whole window instead of bunching them.
            delay = self._random() * min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** attempt)
        if max(now - started, slept) + delay > self._retry_total_timeout:
            return None
        return delay

    # -- reply handling -----------------------------------------------------------------------------------
    def _log(self, call: Call, response: httpx.Response, started: float) -> None:
        logger.info("%s %s -> %d (%.0f ms, request id %s)", call.method, response.request.url.path,
                    response.status_code, (time.monotonic() - started) * 1000, request_id(response) or "-")

    def _secrets(self) -> list[str]:
        return self._auth.secrets()

    def _response_error(self, call: Call, response: httpx.Response, retries: int = 0) -> HttpResponseError:
        """Map a non-2xx reply (already read) to the error tree, with a one-line, actionable message."""
        status = response.status_code
        code = response.headers.get("x-ms-error-code")
        detail = ""
        try:
            body = response.json()
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                code = error.get("code") or code
                detail = str(error.get("message") or "")
            elif isinstance(body, dict) and body.get("message"):
                detail = str(body["message"])
        except ValueError:
            detail = response.text
        detail = _excerpt(detail, self._secrets()) if detail else ""
        if status == 401:
            # A rejected token stays rejected until it expires; fetch a new one for the next call.
            self._auth.invalidate()
        return status_error(status, code, detail, op=call.op, target=call.target,
                            endpoint=public_endpoint(self.endpoint),
                            session_id=self._session_id, scope=self._settings.token_scope,
                            api_version=self.api_version, retries=retries, request_id=request_id(response),
                            kind=call.kind)

    def _malformed(self, call: Call, response: httpx.Response, why: str) -> MalformedResponseError:
        excerpt = _excerpt(response.text, self._secrets(), 120) if response.is_stream_consumed else "<stream>"
        return MalformedResponseError(
            f"Unexpected reply to {call.op} ({response.status_code}, {why}): {excerpt!r}; the endpoint may not "
            f"be a session pool, or api-version {self.api_version} may not match it.",
            status_code=response.status_code, request_id=request_id(response))

    def _json(self, call: Call, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self._malformed(call, response, "not JSON") from exc

    def _parse(self, call: Call, response: httpx.Response, parser: Any, *args: Any) -> Any:
        body = self._json(call, response)
        try:
            if not isinstance(body, (dict, list)):
                raise TypeError("not an object")
            return parser(body, *args)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise self._malformed(call, response, f"missing or bad field: {exc}") from exc

    def _parse_execution(self, call: Call, response: httpx.Response) -> _models.ExecutionResult | str:
        """An ExecutionResult, or the execution id to poll while the service reports it still running."""
        if not self._settings.is_v2:
            return self._parse(call, response, _models.execution_from_v1)
        body = self._json(call, response)
        if isinstance(body, dict) and "status" in body:
            try:
                pending = _models.execution_state(body["status"]) == "pending"
            except ValueError:
                pending = False
            if pending:
                if not body.get("id"):
                    raise self._malformed(call, response, "running execution without an id")
                return str(body["id"])
        return self._parse(call, response, _models.execution_from_v2)

    def _parse_upload(self, call: Call, response: httpx.Response, directory: str) -> _models.RemoteFile:
        return self._parse(call, response, _models.uploaded_file, self._settings.is_v2, directory, call.target)

    def _parse_list(self, call: Call, response: httpx.Response, directory: str,
                    recursive: bool) -> list[_models.RemoteFile]:
        return self._parse(call, response, _models.file_listing, self._settings.is_v2, directory, recursive)

    def _parse_session(self, call: Call, response: httpx.Response) -> _models.SessionInfo:
        return self._parse(call, response, _models.session_from_v2)

    def _v1_delete_code(self, directory: str, name: str) -> str:
        return v1_delete_snippet(f"{directory}/{name}" if directory else name)

    def _v1_delete_outcome(self, call: Call, result: _models.ExecutionResult) -> None:
        if result.succeeded and result.result == "deleted":
            return
        if result.succeeded and result.result == "missing":
            # Worded like the service's 404 for a download, so %aca_rm and %aca_download say the same.
            raise ResourceNotFoundError(f"File {call.target!r} not found in session {self._session_id} (404 "
                                        f"FileNotFound). The session said: /mnt/data/{call.target} does not exist "
                                        f"in this session.", status_code=404, error_code="FileNotFound")
        raise HttpResponseError(
            f"Could not delete {call.target!r} in session {self._session_id}: "
            f"{_excerpt(result.stderr or repr(result.result), self._secrets())}")

    def _directory(self, path: str | None) -> str:
        return normalize_directory(path)
