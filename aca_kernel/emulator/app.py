"""The local session pool's ASGI app: bearer-token check, pool prefix, api-version, identifier, error replies.

Order of checks for every data-plane request: token (401), api-version (400), path and method for that
version (404 SessionRequestNotSupported / 400), identifier (400), then the operation itself. Every reply
carries ``x-ms-request-id``; errors also carry ``x-ms-error-code``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import errors
from .backend import Backend
from .openapi import openapi_document
from .routes import API_VERSIONS, IDENTIFIER_RE, Call, match, query_value

__all__ = ["backend_of", "create_app"]

logger = logging.getLogger("aca_kernel.emulator")

_POOL_PREFIX = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/sessionPools/(?P<pool>[^/]+)(?P<rest>/.*)?$",
    re.IGNORECASE,
)
DEFAULT_POOL = "default"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def backend_of(request: Request) -> Backend:
    return request.app.state.backend


def _split_pool(path: str) -> tuple[str, str, str]:
    """(pool key, operation path, endpoint path prefix) for a request path."""
    found = _POOL_PREFIX.match(path)
    if found is None:
        return DEFAULT_POOL, path, ""
    rest = found.group("rest") or ""
    prefix = path[: len(path) - len(rest)] if rest else path
    # Azure resource names are case-insensitive; the pool name alone picks the pool.
    return "pools/" + found.group("pool").lower(), rest, prefix


def _query(request: Request) -> dict[str, list[str]]:
    # Query names compared case-insensitively, as ASP.NET does; values are already percent-decoded.
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key.lower(), []).append(value)
    return out


def _check_token(request: Request, token: str) -> None:
    header = request.headers.get("authorization")
    if not header:
        raise errors.Unauthorized(
            "The request has no Authorization header; send 'Authorization: Bearer <token>' with the pool's token."
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise errors.Unauthorized("The Authorization header must be 'Bearer <token>'.")
    if not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise errors.Unauthorized(
            "The bearer token is not this local pool's token; use the token it printed at start (or --token)."
        )


async def _dispatch(request: Request) -> Response:
    backend = backend_of(request)
    _check_token(request, request.app.state.token)
    pool_key, op_path, prefix = _split_pool(request.scope["path"])
    query = _query(request)
    version = query_value(query, "api-version")
    if version is None:
        raise errors.SessionRequestValidationFailed(
            f"The api-version query parameter is missing; supported: {', '.join(API_VERSIONS)}.",
            target="api-version",
        )
    if version not in API_VERSIONS:
        raise errors.SessionRequestValidationFailed(
            f"api-version {version!r} is not supported; use one of {', '.join(API_VERSIONS)}.",
            target="api-version",
        )
    # Tolerate a trailing slash and doubled slashes from endpoint joining.
    op = re.sub(r"/{2,}", "/", op_path).strip("/")
    route, params = match(request.method, op, version)
    identifier = None
    if route.identifier:
        identifier = query_value(query, "identifier")
        if not identifier:
            raise errors.SessionRequestValidationFailed(
                "The identifier query parameter is missing; every session call names its session with "
                "?identifier=<id>.", target="identifier",
            )
        if not IDENTIFIER_RE.match(identifier):
            raise errors.SessionRequestValidationFailed(
                f"The identifier {identifier!r} is not valid: use 1 to 256 letters, digits and "
                "-_|{}[]:\";'<>?/.,@#$%^&*()+=!~` characters (a uuid4 always works).", target="identifier",
            )
    base_url = f"{request.url.scheme}://{request.url.netloc}{quote(prefix, safe='/')}"
    call = Call(request, version, backend.pool(pool_key), identifier, params, query, base_url)
    if backend.settings.serialize_files and op.startswith("files") and identifier is not None:
        # --serialize-files: a file call waits for the session's running execution, as a service that queues
        # every call of a session behind its code would (the reference does not say; docs/emulator.md).
        async with call.session().lock:
            return await route.handler(call)
    return await route.handler(call)


async def _handle(request: Request) -> Response:
    request_id = str(uuid.uuid4())
    started = time.monotonic()
    try:
        response = await _dispatch(request)
    except errors.ServiceError as exc:
        response = JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())
    except ClientDisconnect:
        logger.info("%s %s: client disconnected", request.method, request.scope["path"])
        response = Response(status_code=499)
    except Exception as exc:
        logger.exception("%s %s failed inside the local pool", request.method, request.scope["path"])
        err = errors.InternalError(f"The local session pool failed: {type(exc).__name__}: {exc}")
        response = JSONResponse(err.body(), status_code=err.status, headers=err.headers())
    response.headers["x-ms-request-id"] = request_id
    logger.info("%s %s -> %d (%.0f ms)", request.method, request.scope["path"], response.status_code,
                (time.monotonic() - started) * 1000)
    return response


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


def create_app(backend: Backend, token: str) -> Starlette:
    """The ASGI app serving ``backend``; every data-plane call must carry ``Bearer <token>``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    app = Starlette(
        routes=[
            Route("/openapi.json", _openapi, methods=["GET"]),
            Route("/{path:path}", _handle, methods=_METHODS),
        ],
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.state.token = token
    return app
