"""The OpenAPI 3.0 documents served at ``/openapi.json``, built from the route table so they cannot drift.

``/openapi.json?api-version=V`` describes exactly what api-version ``V`` serves: its paths, their parameters and
their reply schemas. Plain ``/openapi.json`` is the union of all versions (OpenAPI has one operation per path
and method, so where versions differ its descriptions say which version does what).

One thing no document can say: a method a path does not have is answered 400 SessionRequestValidationFailed
(target ``method``), as the service does, not 405.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_REF = "#/components/schemas/"
# A name or directory relative to /mnt/data (or under /mnt/data/): segments of 1-63 characters other than "/"
# and NUL, none of them "..". The pool takes longer names (up to 255 bytes a segment); 63 characters keep any
# generated name under that whatever its encoding.
_SEGMENT = r"(?:[^/\u0000.][^/\u0000]{0,62}|\.[^/\u0000.][^/\u0000]{0,61}|\.\.[^/\u0000]{1,61}|\.)"
_PATH = {"type": "string", "pattern": rf"^(?:/mnt/data(?:/+|$))?(?:{_SEGMENT}(?:/+{_SEGMENT})*/*)?$"}
# In the URL path a file name is one segment (a name in a subdirectory comes as a%2Fb, which the pool also takes)
_NAME = {"type": "string", "pattern": rf"^{_SEGMENT}$"}


def _schemas() -> dict[str, Any]:
    string, integer = {"type": "string"}, {"type": "integer"}
    any_value = {"description": "JSON value of the last expression, or an image object", "nullable": True}
    timestamp = {"type": "string", "format": "date-time"}
    timeout = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "nullable": True,
               "description": "seconds; honoured when lower than the pool's --timeout; null means none"}
    return {
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": string, "message": string, "target": string}}},
        },
        "ImageResult": {"type": "object", "properties": {
            "type": {"type": "string", "enum": ["image"]}, "format": string, "base64_data": string}},
        "V1ExecuteRequest": {"type": "object", "required": ["properties"], "properties": {"properties": {
            "type": "object", "required": ["code"], "properties": {
                "codeInputType": {"type": "string", "enum": ["inline", "Inline", None], "nullable": True},
                "executionType": {"type": "string", "enum": ["synchronous", "Synchronous", None], "nullable": True},
                "code": string, "timeoutInSeconds": timeout}}}},
        "V1ExecuteResponse": {"type": "object", "properties": {"$id": string, "properties": {
            "type": "object", "properties": {
                "$id": string, "status": {"type": "string", "enum": ["Success", "Failure"]},
                "stdout": string, "stderr": string, "result": any_value,
                "executionTimeInMilliseconds": integer}}}},
        "V1FileList": {"type": "object", "properties": {"$id": string, "value": {"type": "array", "items": {
            "type": "object", "properties": {"$id": string, "properties": {"type": "object", "properties": {
                "$id": string, "filename": string, "size": integer, "lastModifiedTime": timestamp}}}}}}},
        "ExecutionRequest": {"type": "object", "required": ["code"], "properties": {
            "codeInputType": {"type": "string", "enum": ["Inline", "inline", None], "nullable": True},
            "executionType": {"type": "string", "enum": ["Synchronous", "Asynchronous", "synchronous",
                                                         "asynchronous", None], "nullable": True},
            "code": string, "timeoutInSeconds": timeout,
            "outputStreamsMaxLength": {"type": "integer", "minimum": 1, "default": 4096, "nullable": True,
                                       "description": "result.stdout and result.stderr are cut to this many "
                                                      "characters"}}},
        "Execution": {"type": "object", "required": ["id", "identifier", "executionType", "status"], "properties": {
            "id": string, "identifier": string,
            "executionType": {"type": "string", "enum": ["Synchronous", "Asynchronous"]},
            "status": {"type": "string", "enum": ["Running", "Succeeded", "Failed"]},
            "result": {"type": "object", "properties": {
                "stdout": string, "stderr": string, "executionResult": any_value,
                "executionTimeInMilliseconds": integer}}}},
        "File": {"type": "object", "required": ["name", "type"], "properties": {
            "name": string, "directory": {"type": "string", "description": "2025-10-02-preview"},
            "type": {"type": "string", "enum": ["file", "directory"]}, "contentType": string,
            "sizeInBytes": integer, "lastModifiedAt": timestamp}},
        "FileList": {"type": "object", "properties": {
            "value": {"type": "array", "items": {"$ref": _REF + "File"}}, "nextLink": {"type": "string",
                                                                                       "nullable": True}}},
        "Session": {"type": "object", "properties": {
            "identifier": string, "createdAt": timestamp, "lastAccessedAt": timestamp, "expireAt": timestamp,
            "etag": string}},
        "SessionList": {"type": "object", "properties": {
            "value": {"type": "array", "items": {"$ref": _REF + "Session"}},
            "sessions": {"type": "array", "items": {"$ref": _REF + "Session"}},
            "count": integer, "nextLink": {"type": "string", "nullable": True}}},
        "Metadata": {"type": "object", "properties": {
            "runtimes": {"type": "array", "items": {"type": "object"}},
            "preInstalledPackages": {"type": "array", "items": {"type": "object"}},
            "createdAt": timestamp, "lastUpdatedAt": timestamp, "jupyterKernel": {"type": "object"}}},
    }


# (method, path) -> (request body, success status, response schema or "binary")
_SHAPES: dict[tuple[str, str], tuple[str | None, str, str]] = {
    ("POST", "code/execute"): ("V1ExecuteRequest", "200", "V1ExecuteResponse"),
    ("POST", "files/upload"): ("multipart", "200", "V1FileList"),
    ("GET", "files/content/{filename}"): (None, "200", "binary"),
    ("GET", "files"): (None, "200", "V1FileList | FileList"),
    ("POST", "executions"): ("ExecutionRequest", "200", "Execution"),
    ("GET", "executions/{executionId}"): (None, "200", "Execution"),
    ("POST", "files"): ("multipart", "200", "File"),
    ("GET", "files/{filename}/content"): (None, "200", "binary"),
    ("GET", "files/{filename}"): (None, "200", "File"),
    ("DELETE", "files/{filename}"): (None, "204", ""),
    ("GET", "session"): (None, "200", "Session"),
    ("DELETE", "session"): (None, "204", ""),
    ("GET", "listSessions"): (None, "200", "SessionList"),
    ("GET", "metadata"): (None, "200", "Metadata"),
}


def _content(schema: str) -> dict[str, Any]:
    if schema == "binary":
        return {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    if schema == "multipart":
        return {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}}}
    return {"application/json": {"schema": {"$ref": _REF + schema}}}


def _operation(method: str, path: str, routes: list[Any], only: str | None) -> dict[str, Any]:
    """The operation for ``method path``; ``only``: as api-version ``only`` serves it, else for all versions."""
    from .routes import IDENTIFIER_RE, V1, V2_2410, V2_2510

    versions = [only] if only else sorted({v for r in routes for v in r.versions})
    first = routes[0]
    params: list[dict[str, Any]] = [
        {"name": "api-version", "in": "query", "required": True, "schema": {"type": "string", "enum": versions}},
    ]
    if first.identifier:
        params.append({"name": "identifier", "in": "query", "required": True,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 256,
                                  "pattern": IDENTIFIER_RE.pattern}})
    for name in ("filename", "executionId"):
        if "{" + name + "}" in path:
            params.append({"name": name, "in": "path", "required": True,
                           "schema": _NAME if name == "filename" else {"type": "string"}})
    if path.startswith("files") and V1 not in versions:
        params.append({"name": "path", "in": "query", "required": False, "schema": _PATH,
                       "description": "Directory under /mnt/data (a leading /mnt/data is accepted)"})
    if (method, path) == ("GET", "files") and V2_2510 in versions:
        params.append({"name": "recursive", "in": "query", "required": False, "schema": {"type": "boolean"},
                       "description": f"{V2_2510} only (earlier versions answer 400)"})
    if path == "listSessions":
        params.append({"name": "skip", "in": "query", "required": False,
                       "schema": {"type": "integer", "minimum": 0}})
    body, status, schema = _SHAPES[(method, path)]
    responses: dict[str, Any] = {
        "400": {"description": "SessionRequestValidationFailed / SessionPropertiesMissing",
                "content": _content("Error")},
        "401": {"description": "Missing or wrong bearer token", "content": _content("Error")},
        "404": {"description": "Not found, not supported in this api-version, or pool at max sessions",
                "content": _content("Error")},
        "default": {"description": "Any other error (413 too large, 503 stopping or short of descriptors, 507 disk "
                                   "full, 500 a failure of the pool itself)", "content": _content("Error")},
    }
    description = "api-versions: " + ", ".join(versions) + "."
    if (method, path) == ("GET", "files"):
        if only:
            responses[status] = {"description": "OK", "content": _content("V1FileList" if only == V1 else "FileList")}
        else:
            responses[status] = {"description": "2024-02-02-preview: V1FileList (every file, recursive); "
                                 "later: FileList", "content": {"application/json": {"schema": {"anyOf": [
                                     {"$ref": _REF + "V1FileList"}, {"$ref": _REF + "FileList"}]}}}}
    elif status == "204":
        responses[status] = {"description": "Deleted"}
    else:
        responses[status] = {"description": "OK", "content": _content(schema)}
    if path == "executions" and (only is None or only == V2_2410):
        accepted = {"description": "2024-10-02-preview answers 202 (later versions 200); headers "
                    "operation-id and Operation-Location", "content": _content("Execution")}
        if only == V2_2410:
            del responses[status]
        responses["202"] = accepted
    if body == "multipart":
        responses["413"] = {"description": "File over 128 MB", "content": _content("Error")}
    op: dict[str, Any] = {
        "summary": first.summary,
        "description": description,
        "operationId": f"{method.lower()}_{path.replace('/', '_').replace('{', '').replace('}', '')}",
        "parameters": params,
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": _content(body)}
    return op


def openapi_document(api_version: str | None = None) -> dict[str, Any]:
    """Every path and method the local pool implements: for ``api_version`` alone, or for all versions."""
    from .routes import ROUTES

    grouped: dict[tuple[str, str], list[Any]] = {}
    for route in ROUTES:
        if api_version is None or api_version in route.versions:
            grouped.setdefault((route.method, route.path), []).append(route)
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), routes in grouped.items():
        paths.setdefault("/" + path, {})[method.lower()] = _operation(method, path, routes, api_version)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "aca-sessions local session pool",
            "version": api_version or "2025-10-02-preview",
            "description": "The Azure Container Apps dynamic sessions data plane (code-interpreter pools) as "
                           "served by `aca-sessions emulator`. The same paths are served under "
                           "/subscriptions/{s}/resourceGroups/{rg}/sessionPools/{pool}/ (one pool per name). "
                           + ("" if api_version else "Exact per-version documents: /openapi.json?api-version=V. ")
                           + "A method a path does not have is answered 400 SessionRequestValidationFailed "
                           "(target: method), as the service does, not 405.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
        "paths": paths,
    }
