"""The OpenAPI 3.0 document served at ``/openapi.json``, built from the route table so it cannot drift.

One operation per path and method; when a path exists in several api-versions with different shapes, the
description says which version answers with which schema.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_REF = "#/components/schemas/"


def _schemas() -> dict[str, Any]:
    string, integer = {"type": "string"}, {"type": "integer"}
    any_value = {"description": "JSON value of the last expression, or an image object", "nullable": True}
    timestamp = {"type": "string", "format": "date-time"}
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
                "codeInputType": {"type": "string", "enum": ["inline"]},
                "executionType": {"type": "string", "enum": ["synchronous"]},
                "code": string, "timeoutInSeconds": integer}}}},
        "V1ExecuteResponse": {"type": "object", "properties": {"$id": string, "properties": {
            "type": "object", "properties": {
                "$id": string, "status": {"type": "string", "enum": ["Success", "Failure"]},
                "stdout": string, "stderr": string, "result": any_value,
                "executionTimeInMilliseconds": integer}}}},
        "V1FileList": {"type": "object", "properties": {"$id": string, "value": {"type": "array", "items": {
            "type": "object", "properties": {"$id": string, "properties": {"type": "object", "properties": {
                "$id": string, "filename": string, "size": integer, "lastModifiedTime": timestamp}}}}}}},
        "ExecutionRequest": {"type": "object", "required": ["code"], "properties": {
            "codeInputType": {"type": "string", "enum": ["Inline"]},
            "executionType": {"type": "string", "enum": ["Synchronous", "Asynchronous"]},
            "code": string, "timeoutInSeconds": integer,
            "outputStreamsMaxLength": {"type": "integer", "minimum": 1, "default": 4096,
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


def _operation(method: str, path: str, routes: list[Any]) -> dict[str, Any]:
    versions = sorted({v for r in routes for v in r.versions})
    first = routes[0]
    params: list[dict[str, Any]] = [
        {"name": "api-version", "in": "query", "required": True, "schema": {"type": "string", "enum": versions}},
    ]
    if first.identifier:
        params.append({"name": "identifier", "in": "query", "required": True,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 256}})
    for name in ("filename", "executionId"):
        if "{" + name + "}" in path:
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if path.startswith("files") and "2024-02-02-preview" not in versions:
        params.append({"name": "path", "in": "query", "required": False, "schema": {"type": "string"},
                       "description": "Directory under /mnt/data (a leading /mnt/data is accepted)"})
    if (method, path) == ("GET", "files") and "2025-10-02-preview" in versions:
        params.append({"name": "recursive", "in": "query", "required": False, "schema": {"type": "boolean"},
                       "description": "2025-10-02-preview only"})
    if path == "listSessions":
        params.append({"name": "skip", "in": "query", "required": False, "schema": {"type": "integer"}})
    body, status, schema = _SHAPES[(method, path)]
    responses: dict[str, Any] = {
        "400": {"description": "SessionRequestValidationFailed / SessionPropertiesMissing",
                "content": _content("Error")},
        "401": {"description": "Missing or wrong bearer token", "content": _content("Error")},
        "404": {"description": "Not found, not supported in this api-version, or pool at max sessions",
                "content": _content("Error")},
    }
    description = "api-versions: " + ", ".join(versions) + "."
    if (method, path) == ("GET", "files"):
        responses[status] = {"description": "2024-02-02-preview: V1FileList (every file, recursive); "
                             "later: FileList", "content": {"application/json": {"schema": {"oneOf": [
                                 {"$ref": _REF + "V1FileList"}, {"$ref": _REF + "FileList"}]}}}}
    elif status == "204":
        responses[status] = {"description": "Deleted"}
    else:
        responses[status] = {"description": "OK", "content": _content(schema)}
    if path == "executions":
        responses["202"] = {"description": "2024-10-02-preview answers 202 (later versions 200); headers "
                            "operation-id and Operation-Location", "content": _content("Execution")}
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


def openapi_document() -> dict[str, Any]:
    """Every path and method the local pool implements, per api-version."""
    from .routes import ROUTES

    grouped: dict[tuple[str, str], list[Any]] = {}
    for route in ROUTES:
        grouped.setdefault((route.method, route.path), []).append(route)
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), routes in grouped.items():
        paths.setdefault("/" + path, {})[method.lower()] = _operation(method, path, routes)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "aca-sessions local session pool",
            "version": "2025-10-02-preview",
            "description": "The Azure Container Apps dynamic sessions data plane (code-interpreter pools) as "
                           "served by `aca-sessions emulator`. The same paths are served under "
                           "/subscriptions/{s}/resourceGroups/{rg}/sessionPools/{pool}/ (one pool per name).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
        "paths": paths,
    }
