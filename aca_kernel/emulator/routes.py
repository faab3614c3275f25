"""The sessions data-plane route table: parse a request, call the backend, serialise the service's shapes.

Written from the team's protocol reference (shared/aca-api.md §4-§5), not from any client. Paths are
matched per api-version: 2024-02-02-preview has the "v1" paths and envelopes (``$id``, ``properties``),
2024-10-02-preview and later the "v2" ones; session management arrives with 2025-02-02-preview.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from . import errors
from .backend import Execution, Session, SessionPool
from .files import FileEntry, normalize_name
from .limits import MAX_JSON_BODY_BYTES, human_size
from .uploads import receive_files

__all__ = ["API_VERSIONS", "IDENTIFIER_RE", "ROUTES", "V1", "Call", "Route", "match", "query_value"]

V1 = "2024-02-02-preview"
V2_2410, V2_2502, V2_2510 = "2024-10-02-preview", "2025-02-02-preview", "2025-10-02-preview"
API_VERSIONS = (V1, V2_2410, V2_2502, V2_2510)
ALL_V2 = (V2_2410, V2_2502, V2_2510)
FROM_2502 = (V2_2502, V2_2510)
# v2 cuts result.stdout and result.stderr to the request's outputStreamsMaxLength, 4096 characters by default
# (reference §5.1 [INFERRED]); whether v1 cuts is unknown, so v1 never does (docs/emulator.md).
OUTPUT_STREAMS_DEFAULT = 4096
# Union of the documented identifier rules (DOC list, SPEC 2024-10 and SPEC 2025-10): the most tolerant reading.
IDENTIFIER_RE = re.compile(r"""^[A-Za-z0-9_|}{\[\]:";'<>?/.,@#$%^&*()\-+=!~`]{1,256}$""")


@dataclass
class Call:
    """One parsed request: its pool, api-version, identifier, path parameters and query."""

    request: Request
    version: str
    pool: SessionPool
    identifier: str | None
    params: dict[str, str]
    query: dict[str, list[str]]
    base_url: str  # the pool endpoint this request came through, without a trailing slash

    def session(self) -> Session:
        assert self.identifier is not None
        return self.pool.session(self.identifier)

    def arg(self, name: str) -> str | None:
        return query_value(self.query, name)


def query_value(query: dict[str, list[str]], name: str) -> str | None:
    """A query parameter (names compared case-insensitively); given twice it must not disagree."""
    values = query.get(name.lower())
    if not values:
        return None
    if len(set(values)) > 1:
        raise errors.SessionRequestValidationFailed(
            f"The query parameter '{name}' is given more than once with different values.", target=name
        )
    return values[0]


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the service's documentation, e.g. "files/content/{filename}"
    versions: tuple[str, ...]
    handler: Handler
    summary: str
    identifier: bool = True

    @property
    def regex(self) -> re.Pattern[str]:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>.+)", re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}"))
        return re.compile(pattern, re.DOTALL)  # a file name may hold a newline


# -- serialisation ---------------------------------------------------------------------------------------

def timestamp(value: datetime) -> str:
    """.NET's round-trip format with 7 fractional digits, as the captured responses show."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _v1_file(entry: FileEntry) -> dict[str, Any]:
    return {"filename": entry.relpath, "size": entry.size, "lastModifiedTime": timestamp(entry.modified)}


def _v1_file_list(entries: list[FileEntry]) -> dict[str, Any]:
    """``{"$id":"1","value":[{"$id":"2","properties":{"$id":"3",...}}, ...]}`` (Newtonsoft preorder ids)."""
    value = []
    n = 1
    for entry in entries:
        value.append({"$id": str(n + 1), "properties": {"$id": str(n + 2), **_v1_file(entry)}})
        n += 2
    return {"$id": "1", "value": value}


def _v2_file(entry: FileEntry, call: Call, base: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": entry.name}
    if call.version == V2_2510:
        # The parent directory relative to the listed path (SPEC 2025-10 recursive example).
        parent = entry.parent
        out["directory"] = parent[len(base):].lstrip("/") if base and (parent + "/").startswith(base + "/") else parent
    out["type"] = "directory" if entry.is_dir else "file"
    if not entry.is_dir:
        out["contentType"] = entry.content_type
        out["sizeInBytes"] = entry.size
    out["lastModifiedAt"] = timestamp(entry.modified)
    return out


def _v2_execution(execution: Execution) -> dict[str, Any]:
    body: dict[str, Any] = {
        "$id": "1",
        "id": execution.id,
        "identifier": execution.identifier,
        "executionType": execution.execution_type,
        "status": execution.status,
    }
    if execution.finished:
        body["result"] = {
            "$id": "2",
            "stdout": execution.stdout,
            "stderr": execution.stderr,
            "executionResult": execution.result,
            "executionTimeInMilliseconds": execution.execution_time_ms,
        }
    return body


def _session_body(session: Session) -> dict[str, Any]:
    return {
        "identifier": session.identifier,
        "createdAt": timestamp(session.created_at),
        "lastAccessedAt": timestamp(session.last_accessed_at),
        "expireAt": timestamp(session.expire_at),
        "etag": session.etag,
    }


# -- request parsing helpers -------------------------------------------------------------------------------

async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 past ``limit`` bytes (then read to its end and dropped, so the client
    gets to read the answer rather than a reset connection)."""
    chunks: list[bytes] = []
    size = 0
    too_large = False
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = True
            chunks.clear()
        elif not too_large:
            chunks.append(chunk)
    if too_large:
        raise errors.RequestTooLarge(
            f"The request body is over the local session pool's {human_size(limit)} limit for a JSON request; "
            "send less code, or upload large data as a file and read it from /mnt/data.", target="body",
        )
    return b"".join(chunks)


async def _json_body(call: Call) -> dict[str, Any]:
    raw = await _read_body(call.request, MAX_JSON_BODY_BYTES)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise errors.SessionRequestValidationFailed(
            "The request body is not valid JSON; send a JSON object with the execution's fields.", target="body"
        ) from None
    except RecursionError:
        raise errors.SessionRequestValidationFailed(
            "The request body nests JSON too deeply to be read; send a flat JSON object.", target="body"
        ) from None
    if not isinstance(body, dict):
        raise errors.SessionRequestValidationFailed("The request body must be a JSON object.", target="body")
    return body


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """Body keys compared case-insensitively (clients send both codeInputType and CodeInputType)."""
    return {str(k).lower(): v for k, v in body.items()}


def _parse_execution(fields: dict[str, Any], version: str) -> tuple[str, float | None, bool]:
    code = fields.get("code")
    if not isinstance(code, str):
        raise errors.SessionRequestValidationFailed(
            "The execution needs a 'code' field holding the Python source as a string.", target="code"
        )
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate (\ud800 in the JSON) is no Unicode text
        raise errors.SessionRequestValidationFailed(
            f"The code is not valid Unicode text: it holds a lone surrogate ({code[exc.start]!r}) at character "
            f"{exc.start}.", target="code",
        ) from None
    for key, name in (("codeinputtype", "codeInputType"), ("executiontype", "executionType")):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise errors.SessionRequestValidationFailed(f"{name} must be a string, not {fields[key]!r}.",
                                                        target=name)
    input_type = str(fields.get("codeinputtype") or "inline").lower()
    if input_type != "inline":
        raise errors.SessionRequestValidationFailed(
            f"codeInputType {fields.get('codeinputtype')!r} is not supported by the local session pool; "
            "send the code with codeInputType 'Inline'.", target="codeInputType",
        )
    execution_type = str(fields.get("executiontype") or "synchronous").lower()
    if execution_type not in ("synchronous", "asynchronous"):
        raise errors.SessionRequestValidationFailed(
            f"executionType {fields.get('executiontype')!r} is not valid; use 'Synchronous' or 'Asynchronous'.",
            target="executionType",
        )
    if execution_type == "asynchronous" and version == V1:
        raise errors.SessionRequestValidationFailed(
            f"Asynchronous execution is not available in api-version {V1}; use 2024-10-02-preview or later "
            "(POST executions).", target="executionType",
        )
    raw_timeout = fields.get("timeoutinseconds")
    timeout: float | None = None
    if raw_timeout is not None:
        try:
            timeout = float(raw_timeout)
        except (TypeError, ValueError):
            timeout = -1.0
        if not timeout > 0 or isinstance(raw_timeout, bool):
            raise errors.SessionRequestValidationFailed(
                f"timeoutInSeconds must be a positive number of seconds, not {raw_timeout!r}.",
                target="timeoutInSeconds",
            )
    return code, timeout, execution_type == "asynchronous"


def _output_limit(fields: dict[str, Any]) -> int:
    """``outputStreamsMaxLength``: a positive JSON integer; absent or null means the default, 4096."""
    raw = fields.get("outputstreamsmaxlength")
    if raw is None:
        return OUTPUT_STREAMS_DEFAULT
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise errors.SessionRequestValidationFailed(
            f"outputStreamsMaxLength must be a positive whole number of characters, not {raw!r}.",
            target="outputStreamsMaxLength",
        )
    return raw


def _file_path(call: Call, name: str | None = None) -> str:
    if call.version == V1:
        if call.arg("path") is not None:
            raise errors.SessionRequestValidationFailed(
                f"The 'path' parameter needs api-version 2024-10-02-preview or later; in {V1} give the "
                "directory in the file name (sub/name.txt).", target="path",
            )
        return normalize_name(name)
    return normalize_name(name, call.arg("path"))


def _recursive(call: Call) -> bool:
    raw = call.arg("recursive")
    if raw is None:
        return False
    if call.version != V2_2510:
        raise errors.SessionRequestValidationFailed(
            f"The 'recursive' parameter needs api-version {V2_2510}; it is not part of {call.version}.",
            target="recursive",
        )
    if raw.lower() not in ("true", "false"):
        raise errors.SessionRequestValidationFailed(f"recursive must be true or false, not {raw!r}.",
                                                    target="recursive")
    return raw.lower() == "true"


# -- handlers: api-version 2024-02-02-preview -----------------------------------------------------------------

async def execute_v1(call: Call) -> Response:
    body = await _json_body(call)
    props = body.get("properties", body)
    if not isinstance(props, dict):
        raise errors.SessionRequestValidationFailed("'properties' must be a JSON object.", target="properties")
    code, timeout, _ = _parse_execution(_fields(props), call.version)
    session = call.session()
    # v1 streams are never cut: whether the service cuts them is unknown (tolerant choice, docs/emulator.md).
    # 2024-02-02-preview has no GET executions/{id}: nothing would ever read a record of this execution back
    ex = await call.pool.execute(session, code, timeout=timeout, asynchronous=False, operation_id=None, keep=False,
                                 output_limit=None)
    props_out = {
        "$id": "2",
        "status": "Success" if ex.status == "Succeeded" else "Failure",
        "stdout": ex.stdout,
        "stderr": ex.stderr,
        "result": ex.result,
        "executionTimeInMilliseconds": ex.execution_time_ms,
    }
    return _json({"$id": "1", "properties": props_out})


async def upload_v1(call: Call) -> Response:
    base = _file_path(call)
    entries = await receive_files(call.request, call.session(), base, many=True)
    return _json(_v1_file_list(entries))


async def list_v1(call: Call) -> Response:
    _file_path(call)  # refuses a 'path' parameter
    return _json(_v1_file_list(call.session().files.list_all_files()))


async def content(call: Call) -> Response:
    rel = _file_path(call, call.params["filename"])
    f, size = call.session().files.open_download(rel)
    return StreamingResponse(_chunks(f), media_type="application/octet-stream",
                             headers={"Content-Length": str(size)})


def _chunks(f: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    """The file's bytes, a chunk at a time (Starlette runs the iteration in a worker thread)."""
    with f:
        while chunk := f.read(size):
            yield chunk


# -- handlers: 2024-10-02-preview and later ---------------------------------------------------------------

async def execute_v2(call: Call) -> Response:
    body = await _json_body(call)
    fields = _fields(body)
    if "properties" in fields and "code" not in fields:
        if call.version == V2_2510:
            raise errors.SessionPropertiesMissing(
                f"api-version {V2_2510} takes a flat body ({{\"codeInputType\", \"executionType\", \"code\", "
                "...}); remove the 'properties' wrapper.", target="properties",
            )
        # Earlier v2 versions: unknown upstream; unwrap (tolerant choice, docs/emulator.md).
        if not isinstance(fields["properties"], dict):
            raise errors.SessionRequestValidationFailed("'properties' must be a JSON object.", target="properties")
        fields = _fields(fields["properties"])
    code, timeout, asynchronous = _parse_execution(fields, call.version)
    output_limit = _output_limit(fields)
    session = call.session()
    operation_id = call.request.headers.get("operation-id") or None
    if operation_id is not None and operation_id in session.executions:
        raise errors.SessionRequestValidationFailed(
            f"operation-id {operation_id!r} was already used in this session; send a new one.",
            target="operation-id",
        )
    ex = await call.pool.execute(session, code, timeout=timeout, asynchronous=asynchronous,
                                 operation_id=operation_id, output_limit=output_limit)
    location = (f"{call.base_url}/executions/{quote(ex.id, safe='')}?api-version={call.version}"
                f"&identifier={quote(session.identifier, safe='')}")
    headers = {"operation-id": ex.id, "Operation-Location": location}
    return _json(_v2_execution(ex), 202 if call.version == V2_2410 else 200, headers)


async def get_execution(call: Call) -> Response:
    session = call.session()
    return _json(_v2_execution(call.pool.execution(session, call.params["executionId"])))


async def list_v2(call: Call) -> Response:
    base = _file_path(call)
    recursive = _recursive(call)
    entries = call.session().files.listdir(base, recursive=recursive)
    value = [{"$id": str(i + 2), **_v2_file(e, call, base)} for i, e in enumerate(entries)]
    return _json({"$id": "1", "value": value, "nextLink": None})


async def upload_v2(call: Call) -> Response:
    base = _file_path(call)
    entries = await receive_files(call.request, call.session(), base, many=False)
    return _json({"$id": "1", **_v2_file(entries[0], call, base)})


async def file_metadata(call: Call) -> Response:
    base = _file_path(call)
    entry = call.session().files.stat(_file_path(call, call.params["filename"]))
    return _json({"$id": "1", **_v2_file(entry, call, base)})


async def delete_file(call: Call) -> Response:
    # In a worker thread: a directory tree session code made can be large.
    await asyncio.to_thread(call.session().files.delete, _file_path(call, call.params["filename"]))
    return Response(status_code=204)


async def get_session(call: Call) -> Response:
    return _json(_session_body(call.session()))


async def delete_session(call: Call) -> Response:
    assert call.identifier is not None
    await call.pool.delete_session(call.identifier)
    return Response(status_code=204)


LIST_PAGE = 300


async def list_sessions(call: Call) -> Response:
    raw_skip = call.arg("skip") or "0"
    if not raw_skip.isdigit():
        raise errors.SessionRequestValidationFailed(f"skip must be a non-negative integer, not {raw_skip!r}.",
                                                    target="skip")
    skip = int(raw_skip)
    ordered = sorted(call.pool.sessions.values(), key=lambda s: s.created_at)
    page = [_session_body(s) for s in ordered[skip:skip + LIST_PAGE]]
    next_link = None
    if skip + LIST_PAGE < len(ordered):
        next_link = f"{call.base_url}/listSessions?api-version={call.version}&skip={skip + LIST_PAGE}"
    # The spec's example says "sessions", Microsoft's docs say "value" + "count": both are sent.
    return _json({"value": page, "sessions": page, "count": len(ordered), "nextLink": next_link})


async def metadata(call: Call) -> Response:
    info = await call.pool.metadata()
    kernel_version, kernel_summary, kernel_url = info["kernel"]
    return _json({
        "runtimes": [{"name": "Python", "version": info["python"]}],
        "preInstalledPackages": [{"name": n, "version": v} for n, v in info["packages"]],
        "createdAt": timestamp(call.pool.created_at),
        "lastUpdatedAt": timestamp(call.pool.created_at),
        "jupyterKernel": {"name": "ipykernel", "version": kernel_version, "projectUrl": kernel_url,
                          "description": kernel_summary},
    })


ROUTES: tuple[Route, ...] = (
    Route("POST", "code/execute", (V1,), execute_v1, "Run Python code (synchronous)"),
    Route("POST", "files/upload", (V1,), upload_v1, "Upload files to /mnt/data (multipart part 'file')"),
    Route("GET", "files/content/{filename}", (V1,), content, "Download a file's bytes"),
    Route("GET", "files", (V1,), list_v1, "List every file under /mnt/data"),
    Route("POST", "executions", ALL_V2, execute_v2, "Run Python code (synchronous or asynchronous)"),
    Route("GET", "executions/{executionId}", ALL_V2, get_execution, "Get an execution's status and result"),
    Route("GET", "files", ALL_V2, list_v2, "List a directory of /mnt/data"),
    Route("POST", "files", ALL_V2, upload_v2, "Upload one file (multipart part 'file')"),
    Route("GET", "files/{filename}/content", ALL_V2, content, "Download a file's bytes"),
    Route("GET", "files/{filename}", ALL_V2, file_metadata, "Get a file's properties"),
    Route("DELETE", "files/{filename}", ALL_V2, delete_file, "Delete a file or directory"),
    Route("GET", "session", FROM_2502, get_session, "Get the session's properties"),
    Route("DELETE", "session", FROM_2502, delete_session, "Delete the session, its kernel and files"),
    Route("GET", "listSessions", FROM_2502, list_sessions, "List the pool's sessions", identifier=False),
    Route("GET", "metadata", FROM_2502, metadata, "The pool's runtime, packages and kernel", identifier=False),
)
_COMPILED = tuple((r, r.regex) for r in ROUTES)


def match(method: str, path: str, version: str) -> tuple[Route, dict[str, str]]:
    """The route for ``method path`` in ``version``, or the service's error for why there is none."""
    candidates = [(r, m.groupdict()) for r, rx in _COMPILED if (m := rx.fullmatch(path))]
    in_version = [(r, p) for r, p in candidates if version in r.versions]
    for route, params in in_version:
        if route.method == method:
            return route, params
    elsewhere = sorted({v for r, _ in candidates if r.method == method for v in r.versions})
    if elsewhere:
        raise errors.SessionRequestNotSupported(
            f"{method} {path} is not supported in api-version {version}; it exists in {', '.join(elsewhere)}.",
        )
    if in_version:
        allowed = ", ".join(sorted({r.method for r, _ in in_version}))
        raise errors.SessionRequestValidationFailed(
            f"{method} is not a valid method for {path} (allowed: {allowed}).", target="method"
        )
    raise errors.SessionRequestNotSupported(
        f"{method} /{path} is not an operation of the sessions API in api-version {version}.",
    )
