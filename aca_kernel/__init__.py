"""aca-sessions: run notebook cells in Azure Container Apps dynamic sessions.

The public API is flat: ``from aca_kernel import SessionsClient, ExecutionResult, ACASessionsError``; the async
client is ``aca_kernel.aio.SessionsClient``. Importing this package does not import azure.identity, IPython,
ipywidgets, jupyter_client or starlette.
"""

from __future__ import annotations

from ._client import SessionsClient
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
from ._models import ExecutionResult, ImageResult, RemoteFile, SessionInfo
from ._validation import MAX_UPLOAD_BYTES

__version__ = "0.1.0"

__all__ = [
    "API_VERSIONS",
    "DEFAULT_API_VERSION",
    "DEFAULT_TOKEN_SCOPE",
    "MAX_UPLOAD_BYTES",
    "ACASessionsError",
    "ClientAuthenticationError",
    "ConfigurationError",
    "ExecutionResult",
    "ExecutionTimeout",
    "HttpResponseError",
    "ImageResult",
    "InvalidArgumentError",
    "MalformedResponseError",
    "NotSupportedError",
    "PermissionDenied",
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
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "aca_kernel"
del _name, _obj
