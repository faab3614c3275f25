"""The aca-sessions exception tree.

```
ACASessionsError
├── ConfigurationError            no endpoint, unknown api_version, unusable credential
├── InvalidArgumentError          (also a ValueError) bad identifier, path escaping /mnt/data, file over 128 MB
├── NotSupportedError             operation not offered by this api-version
├── ServiceRequestError           no response arrived (.may_have_executed for execute)
│   └── ExecutionTimeout          execute was sent, no answer in time: outcome unknown, never retried
└── HttpResponseError             non-2xx reply, or a 2xx body that cannot be parsed
    ├── RequestValidationError    400
    ├── ClientAuthenticationError 401 (and credential failures before any request)
    ├── PermissionDenied          403
    ├── ResourceNotFoundError     404
    ├── RequestTooLarge           413
    ├── Throttled                 429
    └── MalformedResponseError    2xx with a body that is not the documented shape
```

Every error has ``status_code``, ``error_code``, ``message`` and ``request_id`` (None where not applicable);
``str(error)`` is one line saying what happened and what to do. Errors are raised with ``raise ... from exc``
so the lower-level cause stays available.
"""

from __future__ import annotations

import re

__all__ = [
    "ACASessionsError",
    "ClientAuthenticationError",
    "ConfigurationError",
    "ExecutionTimeout",
    "HttpResponseError",
    "InvalidArgumentError",
    "MalformedResponseError",
    "NotSupportedError",
    "PermissionDenied",
    "RequestTooLarge",
    "RequestValidationError",
    "ResourceNotFoundError",
    "ServiceRequestError",
    "Throttled",
    "error_message",
    "mask_bearer",
    "status_error",
]


class ACASessionsError(Exception):
    """Base class of every error raised by aca-sessions."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        # One line, always: multi-line service messages would break notebook error displays.
        self.message = " ".join(str(message).split())
        self.status_code = status_code
        self.error_code = error_code
        self.request_id = request_id
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


class ConfigurationError(ACASessionsError):
    """The client is not configured correctly (no endpoint, unknown api_version, ...)."""


class InvalidArgumentError(ACASessionsError, ValueError):
    """An argument was rejected before any request was sent."""


class NotSupportedError(ACASessionsError):
    """The operation is not available in the configured api-version."""


class ServiceRequestError(ACASessionsError):
    """No response arrived (connection refused, reset, timed out)."""

    def __init__(self, message: str, *, may_have_executed: bool = False, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.may_have_executed = may_have_executed


class ExecutionTimeout(ServiceRequestError):
    """The execute request was sent but no answer came in time; the code may have run. Never retried."""


class HttpResponseError(ACASessionsError):
    """The service answered with an error status, or with a body that cannot be understood."""


class RequestValidationError(HttpResponseError):
    """400: the service rejected the request's shape or parameters."""


class ClientAuthenticationError(HttpResponseError):
    """401, or no token could be obtained."""


class PermissionDenied(HttpResponseError):
    """403: the identity lacks a role on the session pool."""


class ResourceNotFoundError(HttpResponseError):
    """404: no such file, or wrong endpoint / session."""


class RequestTooLarge(HttpResponseError):
    """413: the upload exceeds the service limit (128 MB)."""


class Throttled(HttpResponseError):
    """429: too many requests, retries exhausted."""


class MalformedResponseError(HttpResponseError):
    """A 2xx reply whose body is not JSON or lacks the documented fields."""


def status_error(status: int, code: str | None, detail: str, *, op: str, target: str | None, endpoint: str,
                 session_id: str, scope: str, api_version: str, retries: int,
                 request_id: str | None, kind: str = "File") -> HttpResponseError:
    """The error for a non-2xx reply: the subclass for the status and a one-line message saying what to do.

    ``target`` names what the call was about (a file, an execution id) and ``kind`` what it is ("File").
    """
    tag = f"{status} {code}" if code else str(status)
    said = f" The service said: {detail}" if detail else ""
    again = f" after {retries} retries" if retries else ""
    if status == 401:
        msg = (f"The token was rejected ({tag}) during {op}: sign in again with `az login` (or set ACA_TOKEN) "
               f"and make sure the token is for scope {scope}.")
    elif status == 403:
        msg = (f"Permission denied ({tag}) during {op}: your identity needs the \"Azure ContainerApps Session "
               f"Executor\" role on the session pool {endpoint}.")
    elif status == 404 and code == "SessionPoolMaxSessionsReached":
        msg = (f"The session pool is full: it is at its session limit ({tag}), so session {session_id} cannot be "
               f"created during {op}. Delete sessions you no longer use (or let them expire) and try again.")
    elif status == 404 and target:
        msg = f"{kind} {target!r} not found in session {session_id} ({tag})."
    elif status == 404:
        msg = (f"Not found ({tag}) during {op}: the endpoint {endpoint} or session {session_id} may be wrong, "
               f"or the pool is at its session limit.")
    elif status == 413 and target:
        msg = f"The upload {target!r} was refused as too large ({tag}): the service accepts at most 128 MB."
    elif status == 413:
        msg = f"The {op} request was refused as too large ({tag}); send less data in one request."
    elif status == 429:
        msg = f"The service is throttling requests ({tag}) during {op}{again}; wait and try again."
    elif status == 400:
        msg = (f"The service rejected the {op} request ({tag}); check the session identifier and "
               f"api-version {api_version}.")
    else:
        msg = f"The service failed the {op} request ({tag}){again}; try again later."
    cls = _STATUS_ERRORS.get(status, HttpResponseError)
    return cls(msg + said, status_code=status, error_code=code, request_id=request_id)


_STATUS_ERRORS: dict[int, type[HttpResponseError]] = {
    400: RequestValidationError, 401: ClientAuthenticationError, 403: PermissionDenied,
    404: ResourceNotFoundError, 413: RequestTooLarge, 429: Throttled,
}


# "Bearer <token>" in any text that may reach a person: the token part is masked.
BEARER_TOKEN = re.compile(r"(?i)(bearer\s+)\S+")


def mask_bearer(text: str, mask: str = "***") -> str:
    return BEARER_TOKEN.sub(lambda m: m.group(1) + mask, text)


def error_message(exc: BaseException) -> str:
    """One readable line for any failure: the service errors already say what to do; others get their type."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        # "Permission denied: /x/y", as a shell says it, rather than "PermissionError: [Errno 13] ..."
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif not isinstance(exc, ACASessionsError) or not text:
        name = type(exc).__name__
        text = f"{name}: {text}" if text else name
    return mask_bearer(" ".join(text.split()))
