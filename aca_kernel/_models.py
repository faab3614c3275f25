"""Result models shared by the sync and async clients (frozen dataclasses, no I/O).

The ``from_*`` constructors raise ``KeyError``/``TypeError``/``ValueError`` on a body that lacks the documented
fields; ``_base`` turns those into ``MalformedResponseError`` at its one boundary.
"""

from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["ExecutionResult", "ExecutionState", "ImageResult", "PoolMetadata", "RemoteFile", "SessionInfo"]

_SUCCEEDED = {"success", "succeeded"}
_FAILED = {"failure", "failed", "canceled", "cancelled"}
_PENDING = {"running", "notstarted"}

_MIMETYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "svg": "image/svg+xml"}


@dataclass(frozen=True)
class ImageResult:
    """An image the service returned as the cell result (``{type: image, format, base64_data}``)."""

    format: str
    base64_data: str = field(repr=False)

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.base64_data)

    @property
    def mimetype(self) -> str:
        fmt = self.format.lower()
        return _MIMETYPES.get(fmt, f"image/{fmt}")


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one execution. A failed execution (user code raised) is a result, not an exception."""

    status: Literal["succeeded", "failed"]
    stdout: str
    stderr: str
    result: Any
    execution_time_ms: int | None
    execution_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def image(self) -> ImageResult | None:
        return self.result if isinstance(self.result, ImageResult) else None


@dataclass(frozen=True)
class RemoteFile:
    """A file or directory under /mnt/data in the session."""

    name: str
    size: int | None
    last_modified: datetime | None
    type: Literal["file", "directory"]
    content_type: str | None
    directory: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def path(self) -> str:
        """The path relative to /mnt/data (``directory/name``)."""
        return posixpath.join(self.directory, self.name) if self.directory else self.name


@dataclass(frozen=True)
class SessionInfo:
    """A session as reported by ``GET session`` (2025-02-02-preview and later)."""

    identifier: str
    created_at: datetime | None
    last_accessed_at: datetime | None
    expire_at: datetime | None
    etag: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class PoolMetadata:
    """What ``GET metadata`` says about the pool (2025-02-02-preview and later).

    ``runtimes`` and ``packages`` map names to versions (``{"Python": "3.12.7"}``, ``{"pandas": "2.2.2", ...}``);
    ``jupyter_kernel`` is the service's ``{name, version, projectUrl, description}`` object, or None.
    """

    runtimes: dict[str, str] = field(compare=False)
    packages: dict[str, str] = field(repr=False, compare=False)
    jupyter_kernel: dict[str, Any] | None = field(compare=False)
    created_at: datetime | None
    last_updated_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)


class ExecutionState:
    """An asynchronous execution as last reported by the service; the clients' ``Execution`` adds ``wait()``.

    ``status`` is "running" until the service reports an end state, then "succeeded" or "failed" and
    ``result`` holds the :class:`ExecutionResult`.
    """

    def __init__(self, execution_id: str, session_id: str, result: ExecutionResult | None,
                 raw: dict[str, Any], timeout: float | None = None) -> None:
        self._id = execution_id
        self._session_id = session_id
        self._result = result
        self._raw = raw
        self._timeout = timeout  # the limit sent with the code, when this handle started it

    @property
    def id(self) -> str:
        return self._id

    @property
    def session_id(self) -> str:
        """The session the execution runs in (kept even if the client moves to another session)."""
        return self._session_id

    @property
    def status(self) -> Literal["running", "succeeded", "failed"]:
        return "running" if self._result is None else self._result.status

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> ExecutionResult | None:
        """The outcome once done, else None (``wait()`` waits for it)."""
        return self._result

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    def _update(self, result: ExecutionResult | None, raw: dict[str, Any]) -> None:
        self._result, self._raw = result, raw

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self._id!r} session_id={self._session_id!r} status={self.status!r}>"


def parse_datetime(value: Any) -> datetime | None:
    """Parse the service's ISO timestamps, which carry up to 7 fractional digits and a ``Z``."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise TypeError(f"timestamp is not a string: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat accepts only 3 or 6 fractional digits; .NET sends 7.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        frac, rest = tail[:digits], tail[digits:]
        text = f"{head}.{(frac + '000000')[:6]}{rest}"
    return datetime.fromisoformat(text)


def execution_state(status: Any) -> str:
    """Map the service's status (any casing, either generation) to succeeded / failed / pending."""
    key = str(status).replace("_", "").lower()
    if key in _SUCCEEDED:
        return "succeeded"
    if key in _FAILED:
        return "failed"
    if key in _PENDING:
        return "pending"
    raise ValueError(f"unknown execution status {status!r}")


def _result_value(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "image" and "base64_data" in value:
        return ImageResult(format=str(value.get("format") or "png"), base64_data=str(value["base64_data"]))
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def execution_from_v1(body: dict[str, Any]) -> ExecutionResult:
    # The legacy flat envelope ({"status", "stdout", ...} at the top) is accepted as well as "properties".
    props = body["properties"] if "properties" in body else body
    state = execution_state(props["status"])
    if state == "pending":
        raise ValueError("2024-02-02-preview has no asynchronous executions")
    return ExecutionResult(
        status=state,  # type: ignore[arg-type]
        stdout=props.get("stdout") or "",
        stderr=props.get("stderr") or "",
        result=_result_value(props.get("result")),
        execution_time_ms=_optional_int(props.get("executionTimeInMilliseconds")),
        execution_id=None,
        raw=body,
    )


def execution_from_v2(body: dict[str, Any]) -> ExecutionResult:
    state = execution_state(body["status"])
    if state == "pending":
        raise ValueError("execution still running")
    inner = body.get("result") or {}
    if not isinstance(inner, dict):
        raise TypeError("result is not an object")
    stderr = inner.get("stderr") or ""
    error = body.get("error")
    if state == "failed" and not stderr and isinstance(error, dict):
        # The service may fill the Azure.Core error object instead of stderr; keep the message visible.
        stderr = str(error.get("message") or error)
    return ExecutionResult(
        status=state,  # type: ignore[arg-type]
        stdout=inner.get("stdout") or "",
        stderr=stderr,
        result=_result_value(inner.get("executionResult")),
        execution_time_ms=_optional_int(inner.get("executionTimeInMilliseconds")),
        execution_id=body.get("id"),
        raw=body,
    )


def session_page(body: dict[str, Any]) -> tuple[list[SessionInfo], str | None]:
    """One page of ``GET listSessions``: the sessions and the next page's link, if any."""
    # The spec's example says "sessions", Microsoft's docs say "value" (+ "count"): take whichever is there.
    items = body["sessions"] if "sessions" in body else body["value"]
    if not isinstance(items, list):
        raise TypeError("the session list is not an array")
    next_link = body.get("nextLink")
    return [session_from_v2(item) for item in items], str(next_link) if next_link else None


def _name_versions(items: Any) -> dict[str, str]:
    if items is None:
        return {}
    return {str(item["name"]): str(item.get("version") or "") for item in items}


def pool_metadata(body: dict[str, Any]) -> PoolMetadata:
    kernel = body.get("jupyterKernel")
    if kernel is not None and not isinstance(kernel, dict):
        raise TypeError("jupyterKernel is not an object")
    return PoolMetadata(
        runtimes=_name_versions(body.get("runtimes")),
        packages=_name_versions(body.get("preInstalledPackages")),
        jupyter_kernel=kernel,
        created_at=parse_datetime(body.get("createdAt")),
        last_updated_at=parse_datetime(body.get("lastUpdatedAt")),
        raw=body,
    )


def strip_data_prefix(name: str) -> str:
    for prefix in ("/mnt/data/", "mnt/data/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name.lstrip("/") if name == "/mnt/data" else name


def file_from_v1(entry: dict[str, Any]) -> RemoteFile:
    props = entry["properties"] if "properties" in entry else entry
    rel = strip_data_prefix(str(props["filename"])).strip("/")
    directory, name = posixpath.split(rel)
    size = props.get("size")
    return RemoteFile(
        name=name,
        size=None if size is None else int(size),
        last_modified=parse_datetime(props.get("lastModifiedTime") or props.get("last_modified_time")),
        type="file",
        content_type=None,
        directory=directory,
        raw=entry,
    )


def file_from_v2(entry: dict[str, Any], requested_dir: str = "") -> RemoteFile:
    name = str(entry["name"])
    kind = str(entry.get("type") or "file").lower()
    sub = str(entry.get("directory") or "").strip("/")
    directory = strip_data_prefix(posixpath.join(requested_dir, sub) if sub else requested_dir).strip("/")
    if "/" in name:
        # Tolerate a service that reports the relative path as the name.
        extra, name = posixpath.split(name.strip("/"))
        directory = posixpath.join(directory, extra) if directory else extra
    size = entry.get("sizeInBytes")
    return RemoteFile(
        name=name,
        size=None if size is None else int(size),
        last_modified=parse_datetime(entry.get("lastModifiedAt")),
        type="directory" if kind == "directory" else "file",
        content_type=entry.get("contentType"),
        directory=directory,
        raw=entry,
    )


def session_from_v2(body: dict[str, Any]) -> SessionInfo:
    return SessionInfo(
        identifier=str(body["identifier"]),
        created_at=parse_datetime(body.get("createdAt")),
        last_accessed_at=parse_datetime(body.get("lastAccessedAt")),
        # The spec and live service say expireAt; one docs revision says expiresAt.
        expire_at=parse_datetime(body.get("expireAt") or body.get("expiresAt")),
        etag=body.get("etag"),
        raw=body,
    )


def uploaded_file(body: Any, is_v2: bool, directory: str, target: str | None) -> RemoteFile:
    """The file described by an upload reply (v2: one object; v1: the listing envelope)."""
    if is_v2:
        entry = body[0] if isinstance(body, list) else body  # the BYOC container answers with an array
        return file_from_v2(entry, directory)
    files = [file_from_v1(e) for e in body["value"]]
    return next((f for f in files if f.path == target), files[0])


def file_listing(body: Any, is_v2: bool, directory: str, recursive: bool) -> list[RemoteFile]:
    if is_v2:
        return [file_from_v2(e, directory) for e in body["value"]]
    files = [file_from_v1(e) for e in body["value"]]
    # 2024-02-02-preview has no `path` and lists nested files by their relative names: select the directory
    # here, and stand in a directory entry for each sub-directory so a browser can descend like on v2.
    prefix = directory + "/" if directory else ""
    below = [f for f in files if f.directory == directory or f.directory.startswith(prefix)]
    if recursive:
        return below
    entries = [f for f in below if f.directory == directory]
    subdirs = sorted({f.directory[len(prefix):].split("/", 1)[0] for f in below if f.directory != directory})
    entries += [RemoteFile(name=d, size=None, last_modified=None, type="directory", content_type=None,
                           directory=directory, raw={}) for d in subdirs]
    return entries
