"""Auth: static tokens, TokenCredential caching and single-flight, refresh, credential errors, no token leaks.

Every test here talks to the real local pool over real HTTP through ``Recording`` / ``AsyncRecording`` (real
transports that record what the client sends). The pool answers 401 to any token but its own, so a request that
succeeds proves the right token was sent. Only ``test_token_never_in_repr_logs_or_errors`` keeps an HTTP mock: it
needs a 401 whose body echoes the token, which the pool never produces.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError as AzureAuthError
from azure.identity import CredentialUnavailableError

import aca_kernel
import aca_kernel.aio

from .conftest import AsyncRecording, Recording

SECRET = "s3cr3t-token-value"


@pytest.fixture
def token(pool) -> str:
    """The pool's bearer token: the only one it accepts."""
    if not pool.token:
        pytest.skip("needs the pool's bearer token (ACA_TOKEN in live mode)")
    return pool.token


def fresh_sid() -> str:
    return str(uuid.uuid4())


class CountingCredential:
    """A sync TokenCredential returning ``token``: counts get_token calls; can hold the first call until released.

    With ``sent`` (a transport's request list), ``sent_at`` records how many requests had been sent at each call.
    """

    def __init__(self, token: str, lifetime: float = 3600.0, clock=time.time,
                 sent: list[httpx.Request] | None = None) -> None:
        self.token = token
        self.calls = 0
        self.scopes: list[str] = []
        self.lifetime = lifetime
        self.clock = clock
        self.sent = sent
        self.sent_at: list[int] = []
        self.release: threading.Event | None = None

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls += 1
        self.scopes.extend(scopes)
        if self.sent is not None:
            self.sent_at.append(len(self.sent))
        if self.release is not None:
            assert self.release.wait(60), "the test never released get_token"
        return AccessToken(self.token, int(self.clock() + self.lifetime))


class AsyncCountingCredential:
    def __init__(self, token: str = SECRET) -> None:
        self.token = token
        self.calls = 0
        self.gate: asyncio.Future | None = None

    async def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls += 1
        if self.gate is not None:
            await self.gate
        return AccessToken(self.token, int(time.time() + 3600))

    async def close(self) -> None:
        pass


def test_static_token_is_sent_and_user_agent_set(pool, token):
    rec = Recording()
    with aca_kernel.SessionsClient(pool.endpoint, token, session_id=fresh_sid(), transport=rec) as client:
        assert client.list_files() == []
    assert rec.requests[0].headers["authorization"] == f"Bearer {token}"
    assert rec.requests[0].headers["user-agent"].startswith(f"aca-sessions/{aca_kernel.__version__} (Python ")


def test_aca_token_env_is_the_default_credential(monkeypatch, pool, token):
    monkeypatch.setenv("ACA_TOKEN", token)
    rec = Recording()
    with aca_kernel.SessionsClient(pool.endpoint, session_id=fresh_sid(), transport=rec) as client:
        assert client.list_files() == []
    assert rec.requests[0].headers["authorization"] == f"Bearer {token}"


def test_token_credential_is_cached_and_uses_the_scope(monkeypatch, pool, token):
    monkeypatch.setenv("ACA_TOKEN_SCOPE", "https://acasessions.io/.default")
    cred = CountingCredential(token)
    rec = Recording()
    with aca_kernel.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(), transport=rec) as client:
        for _ in range(3):
            assert client.list_files() == []
    assert cred.calls == 1 and cred.scopes == ["https://acasessions.io/.default"]
    assert len(rec.requests) == 3
    assert {r.headers["authorization"] for r in rec.requests} == {f"Bearer {token}"}


@pytest.mark.parametrize("kwargs, minutes", [({}, 5), ({"token_refresh_minutes": 10}, 10)])
def test_token_refreshed_a_number_of_minutes_before_expiry(kwargs, minutes, pool, token):
    clock = [1_000_000.0]
    rec = Recording()
    cred = CountingCredential(token, lifetime=3600, clock=lambda: clock[0], sent=rec.requests)
    with aca_kernel.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(), transport=rec, **kwargs) as client:
        client._auth._cache.clock = lambda: clock[0]
        client.list_files()
        clock[0] += 3600 - minutes * 60 - 1  # still more than the margin left
        client.list_files()
        assert cred.calls == 1
        clock[0] += 2  # now inside the margin
        assert client.list_files() == []
    assert cred.calls == 2
    # The refresh happened in the third request's auth flow (two requests already sent), and that request,
    # carrying the refreshed token, was accepted.
    assert cred.sent_at == [0, 2] and len(rec.requests) == 3
    assert rec.requests[-1].headers["authorization"] == f"Bearer {token}"


async def test_async_token_refreshed_five_minutes_before_expiry_by_default(pool, token):
    clock = [1_000_000.0]
    rec = AsyncRecording()
    cred = CountingCredential(token, lifetime=3600, clock=lambda: clock[0], sent=rec.requests)
    async with aca_kernel.aio.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(),
                                             transport=rec) as client:
        client._auth._cache.clock = lambda: clock[0]
        await client.list_files()
        clock[0] += 3600 - 5 * 60 - 1
        await client.list_files()
        assert cred.calls == 1
        clock[0] += 2
        assert await client.list_files() == []
    assert cred.calls == 2
    assert cred.sent_at == [0, 2] and len(rec.requests) == 3


def test_negative_refresh_minutes_are_refused():
    with pytest.raises(aca_kernel.InvalidArgumentError, match="token_refresh_minutes"):
        aca_kernel.SessionsClient("https://x.example/", CountingCredential(SECRET), token_refresh_minutes=-1)


def test_concurrent_sync_requests_fetch_one_token(pool, token):
    n = 8
    cred = CountingCredential(token)
    cred.release = threading.Event()
    rec = Recording()
    client = aca_kernel.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(), transport=rec)
    # Hold the first fetch until every thread has looked at the cache, so all of them contend for it.
    cache = client._auth._cache
    checked = threading.Semaphore(0)
    original = cache.fresh

    def counting_fresh():
        value = original()
        if value is None:
            checked.release()
        return value

    cache.fresh = counting_fresh
    results: list[object] = []

    def worker():
        try:
            results.append(client.list_files())
        except Exception as exc:  # surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for _ in range(n):
        assert checked.acquire(timeout=60)
    cred.release.set()
    for t in threads:
        t.join(60)
    client.close()
    assert results == [[]] * n
    assert len(rec.requests) == n and cred.calls == 1


async def test_concurrent_async_requests_fetch_one_token(pool, token):
    n = 8
    cred = AsyncCountingCredential(token)
    cred.gate = asyncio.get_running_loop().create_future()
    rec = AsyncRecording()
    async with aca_kernel.aio.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(),
                                             transport=rec) as client:
        cache = client._auth._cache
        misses = [0]
        original = cache.fresh

        def counting_fresh():
            value = original()
            if value is None:
                misses[0] += 1
                if misses[0] == n and not cred.gate.done():
                    cred.gate.set_result(None)
            return value

        cache.fresh = counting_fresh
        results = await asyncio.gather(*(client.list_files() for _ in range(n)))
    assert results == [[]] * n
    assert len(rec.requests) == n and cred.calls == 1


async def test_async_client_accepts_a_sync_credential(pool, token):
    cred = CountingCredential(token)
    rec = AsyncRecording()
    async with aca_kernel.aio.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(),
                                             transport=rec) as client:
        assert await client.list_files() == []
        assert await client.list_files() == []
    assert cred.calls == 1 and rec.requests[0].headers["authorization"] == f"Bearer {token}"


def test_sync_client_refuses_an_async_credential():
    with pytest.raises(aca_kernel.ConfigurationError, match="aio"):
        aca_kernel.SessionsClient("https://x.example/", AsyncCountingCredential())


@pytest.mark.parametrize("exc", [AzureAuthError("AADSTS700082: refresh token expired"),
                                 CredentialUnavailableError("no credential in the chain")])
def test_credential_errors_become_client_authentication_error(exc, pool):
    class Failing:
        def get_token(self, *scopes, **kwargs):
            raise exc

    rec = Recording()
    with aca_kernel.SessionsClient(pool.endpoint, Failing(), session_id=fresh_sid(), transport=rec) as client:
        with pytest.raises(aca_kernel.ClientAuthenticationError) as info:
            client.execute("1")
    assert rec.requests == []  # nothing was sent without a token
    assert "az login" in str(info.value) and info.value.__cause__ is exc
    assert "https://dynamicsessions.io/.default" in str(info.value)


async def test_async_credential_errors_become_client_authentication_error(pool):
    class Failing:
        async def get_token(self, *scopes, **kwargs):
            raise CredentialUnavailableError("EnvironmentCredential: not configured")

    rec = AsyncRecording()
    async with aca_kernel.aio.SessionsClient(pool.endpoint, Failing(), session_id=fresh_sid(),
                                             transport=rec) as client:
        with pytest.raises(aca_kernel.ClientAuthenticationError, match="az login"):
            await client.list_files()
    assert rec.requests == []  # nothing was sent without a token


def test_token_never_in_repr_logs_or_errors(caplog):
    # Mock kept on purpose: the fault is a 401 whose body echoes the token back, which the real pool never
    # does (its 401 body never repeats the token), so only a scripted reply can check the redaction.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "InvalidToken",
                                                   "message": f"token {SECRET} is not valid"}})

    caplog.set_level(logging.DEBUG)
    client = aca_kernel.SessionsClient("https://x.example/", SECRET, transport=httpx.MockTransport(handler))
    with pytest.raises(aca_kernel.ClientAuthenticationError) as info:
        client.list_files()
    client.close()
    assert SECRET not in repr(client) and SECRET not in repr(client._auth)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in caplog.text
    assert any("GET /files -> 401" in r.getMessage() for r in caplog.records if r.name == "aca_kernel.client")


def test_credential_token_never_in_repr_or_logs(caplog, pool, token):
    caplog.set_level(logging.DEBUG)
    cred = CountingCredential(token)
    rec = Recording()
    with aca_kernel.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(), transport=rec) as client:
        assert client.list_files() == []
        assert token not in repr(client) and token not in repr(client._auth)
    assert rec.requests[0].headers["authorization"] == f"Bearer {token}"  # the token really was in play
    assert token not in caplog.text


def test_import_is_lazy_and_default_credential_is_created_on_first_request():
    code = (
        "import sys, os\n"
        "os.environ.pop('ACA_TOKEN', None)\n"
        "import aca_kernel, aca_kernel.aio\n"
        "heavy = ['azure.identity', 'ipywidgets', 'IPython', 'jupyter_client', 'starlette']\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "c = aca_kernel.SessionsClient('https://x.example/')\n"
        "assert 'azure.identity' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_rejected_token_is_not_reused(pool, token):
    # A real 401: the credential's first token is one the pool does not accept, its second is the pool's.
    rejected = "not-the-pool-token"

    class Rotating(CountingCredential):
        def get_token(self, *scopes: str, **kwargs) -> AccessToken:
            access = super().get_token(*scopes, **kwargs)
            return AccessToken(rejected if self.calls == 1 else access.token, access.expires_on)

    cred = Rotating(token)
    rec = Recording()
    with aca_kernel.SessionsClient(pool.endpoint, cred, session_id=fresh_sid(), transport=rec) as client:
        with pytest.raises(aca_kernel.ClientAuthenticationError) as info:
            client.list_files()
        assert info.value.status_code == 401
        assert client.list_files() == []
    assert cred.calls == 2
    assert [r.headers["authorization"] for r in rec.requests] == [f"Bearer {rejected}", f"Bearer {token}"]
