"""The local session pool's error replies: one class per service error.

Every error is answered with the Azure.Core shape the service uses,
``{"error": {"code": ..., "message": ..., "target"?: ...}}``, plus the ``x-ms-error-code`` header.
Codes seen on the real service carry its name (``SessionRequestValidationFailed``,
``SessionPropertiesMissing``, ``SessionRequestNotSupported``); the bodies of 401, 404 and 413 are not
documented anywhere, so those codes are this emulator's choice (see docs/emulator.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ExecutionNotFound",
    "FileNotFound",
    "InsufficientStorage",
    "InternalError",
    "RequestTooLarge",
    "ServiceError",
    "ServiceUnavailable",
    "SessionLimitReached",
    "SessionPropertiesMissing",
    "SessionRequestNotSupported",
    "SessionRequestValidationFailed",
    "ShuttingDown",
    "Unauthorized",
]


class ServiceError(Exception):
    """An error reply: HTTP status, ``error.code`` and a one-line message for people."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalServerError"

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {"x-ms-error-code": self.code}


class SessionRequestValidationFailed(ServiceError):
    """400: bad identifier, api-version, method, query parameter, body or file name [OBSERVED]."""

    status = 400
    code = "SessionRequestValidationFailed"


class SessionPropertiesMissing(ServiceError):
    """400: a ``properties``-wrapped body sent to ``executions`` on 2025-10-02-preview [OBSERVED]."""

    status = 400
    code = "SessionPropertiesMissing"


class SessionRequestNotSupported(ServiceError):
    """404: the path does not exist in the request's api-version (status is the emulator's choice)."""

    status = 404
    code = "SessionRequestNotSupported"


class Unauthorized(ServiceError):
    """401: no bearer token, or not the pool's token (body is the emulator's choice)."""

    status = 401
    code = "Unauthorized"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Bearer realm="aca-sessions-emulator"'}


class FileNotFound(ServiceError):
    """404: no such file or directory in the session's /mnt/data [OBSERVED status]."""

    status = 404
    code = "FileNotFound"


class ExecutionNotFound(ServiceError):
    """404: no execution with that id in this session."""

    status = 404
    code = "ExecutionNotFound"


class SessionLimitReached(ServiceError):
    """404: the pool already holds --max-sessions live sessions [DOC status; body is the emulator's choice]."""

    status = 404
    code = "SessionPoolMaxSessionsReached"


class RequestTooLarge(ServiceError):
    """413: an uploaded file over 128 MB [DOC status; body is the emulator's choice]."""

    status = 413
    code = "RequestEntityTooLarge"


class InsufficientStorage(ServiceError):
    """507: the disk holding the pool's sessions is full (the emulator's choice: not the caller's fault, and
    not the pool's bug that a 500 would suggest)."""

    status = 507
    code = "InsufficientStorage"


class ServiceUnavailable(ServiceError):
    """503: the pool cannot take this now (short of descriptors); the request may be sent again later."""

    status = 503
    code = "ServiceUnavailable"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": "5"}


class ShuttingDown(ServiceUnavailable):
    """503: the pool is stopping; nothing new is started."""


class InternalError(ServiceError):
    """500: the emulator itself failed (for example a session kernel that cannot start)."""

    status = 500
    code = "InternalServerError"
