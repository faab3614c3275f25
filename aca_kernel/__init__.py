"""aca-sessions: run notebook cells in Azure Container Apps dynamic sessions.

The public API is flat: ``from aca_kernel import SessionsClient, ExecutionResult, ACASessionsError``; the async
client is ``aca_kernel.aio.SessionsClient``. Importing this package does not import httpx, azure.identity,
IPython, ipywidgets, jupyter_client, starlette, mcp or cryptography.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import API_VERSIONS, DEFAULT_API_VERSION, DEFAULT_TOKEN_SCOPE
from ._exceptions import (
    ACASessionsError,
    ClientAuthenticationError,
    ConfigurationError,
    ExecutionTimeout,
    HttpResponseError,
    InvalidArgumentError,
    MalformedResponseError,
    NotSupportedError,
    PermissionDenied,
    RequestTooLarge,
    RequestValidationError,
    ResourceNotFoundError,
    ServiceRequestError,
    Throttled,
)
from ._models import ExecutionResult, ImageResult, PoolMetadata, RemoteFile, SessionInfo
from ._validation import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from ._client import Execution, SessionsClient

__version__ = "0.1.0"

__all__ = [
    "API_VERSIONS",
    "DEFAULT_API_VERSION",
    "DEFAULT_TOKEN_SCOPE",
    "MAX_UPLOAD_BYTES",
    "ACASessionsError",
    "ClientAuthenticationError",
    "ConfigurationError",
    "Execution",
    "ExecutionResult",
    "ExecutionTimeout",
    "HttpResponseError",
    "ImageResult",
    "InvalidArgumentError",
    "MalformedResponseError",
    "NotSupportedError",
    "PermissionDenied",
    "PoolMetadata",
    "RemoteFile",
    "RequestTooLarge",
    "RequestValidationError",
    "ResourceNotFoundError",
    "ServiceRequestError",
    "SessionInfo",
    "SessionsClient",
    "Throttled",
    "__version__",
]

# Show the public names as aca_kernel.X in reprs and tracebacks (httpx does the same).
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type):
        _obj.__module__ = "aca_kernel"
del _name, _obj


def __getattr__(name: str) -> Any:
    # The client pulls in httpx (~60 ms); the kernel imports this package at start-up but needs the client only
    # at its first remote cell, so it is loaded on first use (PEP 562).
    if name in ("SessionsClient", "Execution"):
        from . import _client

        value = getattr(_client, name)
        value.__module__ = "aca_kernel"
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aca_kernel' has no attribute {name!r}")
