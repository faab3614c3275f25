"""httpx.Auth flows: a static token, an azure-core TokenCredential, an AsyncTokenCredential.

Fetching a token is I/O, so the credential flows override ``sync_auth_flow`` / ``async_auth_flow`` (httpx's
advice). Tokens are cached and refreshed ``refresh_margin`` seconds before they expire; concurrent requests
share one fetch (a threading.Lock in sync, an asyncio.Lock in async). No token ever reaches a repr or a log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

import httpx

from ._config import ENV_TOKEN
from ._exceptions import ClientAuthenticationError, ConfigurationError

__all__ = ["AsyncCredentialAuth", "CredentialAuth", "StaticTokenAuth", "make_auth"]

logger = logging.getLogger("aca_kernel.client")

_SIGN_IN = "sign in with `az login` (or set ACA_TOKEN to a bearer token)"


class StaticTokenAuth(httpx.Auth):
    """A fixed bearer token (a ``str`` credential or ``$ACA_TOKEN``)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def secrets(self) -> list[str]:
        return [self._token]

    def invalidate(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def __repr__(self) -> str:
        return "StaticTokenAuth(token=<redacted>)"


class _TokenCache:
    """The current token and when to refresh it (no locking: the auth flows hold the lock)."""

    def __init__(self, refresh_margin: float, clock: Callable[[], float]) -> None:
        self.token: str | None = None
        self.refresh_at = 0.0
        self.margin = refresh_margin
        self.clock = clock

    def fresh(self) -> str | None:
        return self.token if self.token is not None and self.clock() < self.refresh_at else None

    def store(self, access_token: Any) -> str:
        token, expires_on = access_token.token, float(access_token.expires_on)
        now = self.clock()
        # A token that lives shorter than the margin would otherwise be refetched on every request.
        self.refresh_at = expires_on - min(self.margin, max(expires_on - now, 0.0) / 2)
        self.token = token
        return token


def _auth_error(exc: BaseException, scope: str) -> ClientAuthenticationError:
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    return ClientAuthenticationError(
        f"Could not get a token for scope {scope} ({type(exc).__name__}: {reason}); {_SIGN_IN}."
    )


class _CredentialAuthBase(httpx.Auth):
    def __init__(
        self,
        credential: Any,
        scope: str,
        refresh_margin: float,
        *,
        owns_credential: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # `credential` may be a zero-argument factory (lazy DefaultAzureCredential) when owns_credential.
        self._credential = credential
        self._scope = scope
        self._cache = _TokenCache(refresh_margin, clock)
        self._owns_credential = owns_credential

    def _resolved(self) -> Any:
        if self._owns_credential and callable(self._credential) and not hasattr(self._credential, "get_token"):
            self._credential = self._credential()
        return self._credential

    def secrets(self) -> list[str]:
        return [self._cache.token] if self._cache.token else []

    def invalidate(self) -> None:
        """Forget the cached token (after a 401), so the next request fetches a new one."""
        self._cache.refresh_at = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scope={self._scope!r}, token=<redacted>)"


class CredentialAuth(_CredentialAuthBase):
    """A sync azure-core ``TokenCredential`` (``get_token(scope) -> AccessToken``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def get_token(self) -> str:
        token = self._cache.fresh()
        if token is not None:
            return token
        with self._lock:
            token = self._cache.fresh()  # another thread may have refreshed it while we waited
            if token is not None:
                return token
            try:
                access_token = self._resolved().get_token(self._scope)
            except Exception as exc:
                raise _auth_error(exc, self._scope) from exc
            logger.debug("Fetched a token for scope %s", self._scope)
            return self._cache.store(access_token)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.get_token()}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("CredentialAuth is for the sync client; use aca_kernel.aio.SessionsClient's auth")
        yield request  # pragma: no cover

    def close(self) -> None:
        if self._owns_credential and hasattr(self._credential, "close"):
            self._credential.close()


class AsyncCredentialAuth(_CredentialAuthBase):
    """An ``AsyncTokenCredential``; a sync ``TokenCredential`` also works (called in a worker thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock: asyncio.Lock | None = None

    async def get_token(self) -> str:
        token = self._cache.fresh()
        if token is not None:
            return token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            token = self._cache.fresh()
            if token is not None:
                return token
            try:
                credential = self._resolved()
                if inspect.iscoroutinefunction(credential.get_token):
                    access_token = await credential.get_token(self._scope)
                else:
                    access_token = await asyncio.to_thread(credential.get_token, self._scope)
            except Exception as exc:
                raise _auth_error(exc, self._scope) from exc
            logger.debug("Fetched a token for scope %s", self._scope)
            return self._cache.store(access_token)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AsyncCredentialAuth is for aca_kernel.aio.SessionsClient")
        yield request  # pragma: no cover

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.get_token()}"
        yield request

    async def aclose(self) -> None:
        if self._owns_credential and hasattr(self._credential, "close"):
            result = self._credential.close()
            if inspect.isawaitable(result):
                await result


def _default_credential(aio: bool) -> Callable[[], Any]:
    def factory() -> Any:
        try:
            if aio:
                from azure.identity.aio import DefaultAzureCredential
            else:
                from azure.identity import DefaultAzureCredential
        except ImportError as exc:  # pragma: no cover - azure-identity is a dependency
            raise ConfigurationError(f"azure-identity is not installed; pass a token or set {ENV_TOKEN}.") from exc
        return DefaultAzureCredential()

    return factory


def make_auth(
    credential: Any,
    scope: str,
    refresh_margin: float,
    env: Mapping[str, str],
    *,
    aio: bool,
) -> StaticTokenAuth | CredentialAuth | AsyncCredentialAuth:
    """Choose the auth flow: str -> static; None -> $ACA_TOKEN, else DefaultAzureCredential (lazily)."""
    if isinstance(credential, str):
        if not credential.strip():
            raise ConfigurationError(f"The token is empty; pass a bearer token or a credential, or {_SIGN_IN}.")
        return StaticTokenAuth(credential.strip())
    flow = AsyncCredentialAuth if aio else CredentialAuth
    if credential is None:
        token = env.get(ENV_TOKEN, "").strip()
        if token:
            return StaticTokenAuth(token)
        return flow(_default_credential(aio), scope, refresh_margin, owns_credential=True)
    if not callable(getattr(credential, "get_token", None)):
        raise ConfigurationError(
            f"credential must be a token string or an azure-core TokenCredential with get_token(), "
            f"got {type(credential).__name__}."
        )
    if not aio and inspect.iscoroutinefunction(credential.get_token):
        raise ConfigurationError(
            "This credential is async (azure.identity.aio); use aca_kernel.aio.SessionsClient with it, "
            "or pass a sync credential from azure.identity."
        )
    return flow(credential, scope, refresh_margin)
