"""Environment-variable names, defaults, API versions and the token scope (no I/O).

Every setting is resolved the same way: an explicit argument first, then the ``ACA_`` environment variable,
then the default below.
"""

from __future__ import annotations

import logging
import platform
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._exceptions import ConfigurationError
from ._validation import validate_session_id

__all__ = [
    "API_VERSIONS",
    "ASYNC_EXECUTION_API_VERSIONS",
    "DEFAULT_API_VERSION",
    "DEFAULT_EXECUTION_TIMEOUT",
    "DEFAULT_TOKEN_SCOPE",
    "ENV_API_VERSION",
    "ENV_ENDPOINT",
    "ENV_SESSION_ID",
    "ENV_TOKEN",
    "ENV_TOKEN_SCOPE",
    "EXECUTE_READ_MARGIN",
    "SESSION_API_VERSIONS",
    "V1_API_VERSIONS",
    "V2_API_VERSIONS",
    "ClientSettings",
    "resolve_settings",
]

VERSION = "0.1.0"

ENV_ENDPOINT = "ACA_POOL_MANAGEMENT_ENDPOINT"
ENV_API_VERSION = "ACA_API_VERSION"
ENV_SESSION_ID = "ACA_SESSION_ID"
ENV_TOKEN = "ACA_TOKEN"
ENV_TOKEN_SCOPE = "ACA_TOKEN_SCOPE"

DEFAULT_API_VERSION = "2024-02-02-preview"
V1_API_VERSIONS = ("2024-02-02-preview",)
V2_API_VERSIONS = ("2024-10-02-preview", "2025-02-02-preview", "2025-10-02-preview")
API_VERSIONS = V1_API_VERSIONS + V2_API_VERSIONS
# GET/DELETE session, GET listSessions and GET metadata arrived with 2025-02-02-preview; asynchronous executions
# (executionType Asynchronous, GET executions/{id}) with 2024-10-02-preview; `recursive` on GET files with
# 2025-10-02-preview.
SESSION_API_VERSIONS = ("2025-02-02-preview", "2025-10-02-preview")
ASYNC_EXECUTION_API_VERSIONS = V2_API_VERSIONS
RECURSIVE_API_VERSIONS = ("2025-10-02-preview",)

DEFAULT_TOKEN_SCOPE = "https://dynamicsessions.io/.default"

# The service stops an execution after 220 s and still answers 200 (status Failure), so the HTTP read must
# outlast the server-side limit by a margin, or we would report "unknown outcome" for a clean timeout reply.
DEFAULT_EXECUTION_TIMEOUT = 220
EXECUTE_READ_MARGIN = 30.0

CHUNK_SIZE = 64 * 1024
USER_AGENT = f"aca-sessions/{VERSION} (Python {platform.python_version()}; {platform.system()})"


@dataclass(frozen=True)
class ClientSettings:
    """The resolved, validated settings of one client (token excluded on purpose)."""

    endpoint: str
    base_url: str
    base_query: tuple[tuple[str, str], ...]
    api_version: str
    session_id: str
    token_scope: str

    @property
    def is_v2(self) -> bool:
        return self.api_version in V2_API_VERSIONS


def normalize_endpoint(endpoint: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """Return (endpoint with a trailing "/", base URL without query, query pairs to keep)."""
    endpoint = endpoint.strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"The pool management endpoint must be an http(s) URL, got {endpoint!r}; "
            f"copy it from `az containerapp sessionpool show --query properties.poolManagementEndpoint`."
        )
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    base_url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    pairs: list[tuple[str, str]] = []
    if parts.query:
        from urllib.parse import parse_qsl

        pairs = parse_qsl(parts.query, keep_blank_values=True)
    full = base_url + (f"?{parts.query}" if parts.query else "")
    return full, base_url, tuple(pairs)


def public_endpoint(endpoint: str) -> str:
    """The endpoint without user-info or query string (a SAS ``sig=`` may be there): the form for messages."""
    try:
        parts = urlsplit(endpoint)
    except ValueError:  # shown in messages, so never raise: say nothing rather than too much
        return "<endpoint>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


# Query parameters the client itself sends: the rest came with the endpoint (a SAS signature, a key).
_PUBLIC_QUERY = frozenset({"api-version", "identifier", "path", "recursive", "skip"})


def public_url(url: object) -> str:
    """A request URL for logs: no user-info, and the value of every query parameter the client does not send
    itself (``sig=``, ``code=`` from the endpoint) replaced by ``***``."""
    try:
        parts = urlsplit(str(url))
        query = [(k, v if k.lower() in _PUBLIC_QUERY else "***") for k, v in parse_qsl(parts.query, True)]
    except ValueError:
        return "<url>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, urlencode(query, safe="*/"), ""))


class RedactURLs(logging.Filter):
    """Makes httpx's own log lines ("HTTP Request: GET <url> ...", INFO) show :func:`public_url` forms."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("://" in str(a) for a in record.args):
            record.args = tuple(public_url(a) if "://" in str(a) else a for a in record.args)
        return True


def redact_http_logs() -> None:
    """Install :class:`RedactURLs` on httpx's logger (once)."""
    log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactURLs) for f in log.filters):
        log.addFilter(RedactURLs())


redact_http_logs()


def resolve_api_version(api_version: str | None, env: Mapping[str, str]) -> str:
    version = api_version if api_version is not None else env.get(ENV_API_VERSION) or DEFAULT_API_VERSION
    if version not in API_VERSIONS:
        source = "api_version" if api_version is not None else ENV_API_VERSION
        raise ConfigurationError(
            f"Unknown {source} {version!r}; use one of: {', '.join(API_VERSIONS)}."
        )
    return version


def resolve_settings(
    endpoint: str | None,
    *,
    api_version: str | None,
    session_id: str | None,
    token_scope: str | None,
    env: Mapping[str, str],
) -> ClientSettings:
    raw_endpoint = endpoint or env.get(ENV_ENDPOINT)
    if not raw_endpoint:
        raise ConfigurationError(
            f"No pool management endpoint: pass endpoint=... or set {ENV_ENDPOINT} "
            f"(az containerapp sessionpool show --query properties.poolManagementEndpoint)."
        )
    full, base_url, query = normalize_endpoint(raw_endpoint)
    sid = session_id if session_id is not None else env.get(ENV_SESSION_ID) or str(uuid.uuid4())
    return ClientSettings(
        endpoint=full,
        base_url=base_url,
        base_query=query,
        api_version=resolve_api_version(api_version, env),
        session_id=validate_session_id(sid),
        token_scope=token_scope or env.get(ENV_TOKEN_SCOPE) or DEFAULT_TOKEN_SCOPE,
    )
