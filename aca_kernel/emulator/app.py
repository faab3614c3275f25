"""The local session pool's ASGI app: bearer-token check, pool prefix, api-version, identifier, error replies.

Order of checks for every data-plane request: token (401), api-version (400), path and method for that
version (404 SessionRequestNotSupported / 400), identifier (400), then the operation itself. Every reply
carries ``x-ms-request-id``; errors also carry ``x-ms-error-code``.
"""

from __future__ import annotations

import asyncio
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import errors
from .backend import Backend
from .openapi import openapi_document
from .routes import API_VERSIONS, IDENTIFIER_RE, Call, match, query_value

__all__ = ["backend_of", "create_app"]

logger = logging.getLogger("aca_kernel.emulator")

_POOL_PREFIX = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/sessionPools/(?P<pool>[^/]+)(?P<rest>/.*)?",
    re.IGNORECASE | re.DOTALL,
)
DEFAULT_POOL = "default"


def backend_of(request: Request) -> Backend:
    return request.app.state.backend


def _split_pool(path: str) -> tuple[str, str, str]:
    """(pool key, operation path, endpoint path prefix) for a request path."""
    found = _POOL_PREFIX.fullmatch(path)
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
    backend_of(request).last_request = started
    try:
        if request.scope["path"] == "/openapi.json" and request.method in ("GET", "HEAD"):
            response: Response = _openapi(request)
        else:
            response = await _dispatch(request)
    except errors.ServiceError as exc:
        response = _error_response(exc)
    except ClientDisconnect:
        logger.info("%s %s: client disconnected", request.method, request.scope["path"])
        response = Response(status_code=499)
    except Exception as exc:
        logger.exception("%s %s failed inside the local pool", request.method, request.scope["path"])
        response = _error_response(errors.InternalError(f"The local session pool failed: {type(exc).__name__}: {exc}"))
    response.headers["x-ms-request-id"] = request_id
    logger.info("%s %s -> %d (%.0f ms)", request.method, request.scope["path"], response.status_code,
                (time.monotonic() - started) * 1000)
    return response


def _openapi(request: Request) -> Response:
    """The API description (no token needed: it holds no data); ``?api-version=V`` for exactly that version."""
    version = query_value(_query(request), "api-version")
    if version is not None and version not in API_VERSIONS:
        raise errors.SessionRequestValidationFailed(
            f"api-version {version!r} is not supported; use one of {', '.join(API_VERSIONS)}.", target="api-version")
    return JSONResponse(openapi_document(version))


def _error_response(exc: errors.ServiceError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    """Every path goes through _handle, so the token is checked first and every answer has the service's shape
    (a Starlette route would answer a path holding a newline with a plain-text 404 of its own)."""
    response = await _handle(Request(scope, receive))
    await response(scope, receive, send)


class _ErrorsAsJSON:
    """The last line of defence: whatever escapes the app (a cancelled request at shutdown included) is answered
    in the service's JSON error shape, never with the server's plain-text 500."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state  # as on the Starlette app it wraps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except BaseException as exc:
            if not started:
                err: errors.ServiceError = (
                    errors.ShuttingDown("The local session pool is stopping; the request was not completed.")
                    if isinstance(exc, asyncio.CancelledError) else
                    errors.InternalError(f"The local session pool failed: {type(exc).__name__}: {exc}"))
                with contextlib.suppress(Exception):
                    await _error_response(err)(scope, receive, send)
            if not isinstance(exc, Exception):
                raise  # cancellation and exit requests go on as they came
            logger.error("%s %s failed inside the local pool", scope.get("method"), scope.get("path"), exc_info=exc)


def create_app(backend: Backend, token: str) -> ASGIApp:
    """The ASGI app serving ``backend``; every data-plane call must carry ``Bearer <token>``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    app = Starlette(routes=[], lifespan=lifespan)
    app.router.default = _serve
    app.state.backend = backend
    app.state.token = token
    return _ErrorsAsJSON(app)
