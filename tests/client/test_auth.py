"""Auth: static tokens, TokenCredential caching and single-flight, refresh, credential errors, no token leaks."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError as AzureAuthError
from azure.identity import CredentialUnavailableError

import aca_kernel
import aca_kernel.aio

SECRET = "s3cr3t-token-value"


def listing_handler(seen: list[httpx.Request]):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"value": []})
    return handler


class CountingCredential:
    """A sync TokenCredential: counts get_token calls; can hold the first call until released."""

    def __init__(self, lifetime: float = 3600.0, clock=time.time) -> None:
        self.calls = 0
        self.scopes: list[str] = []
        self.lifetime = lifetime
        self.clock = clock
        self.release: threading.Event | None = None

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls += 1
        self.scopes.extend(scopes)
        if self.release is not None:
            assert self.release.wait(60), "the test never released get_token"
        return AccessToken(f"{SECRET}-{self.calls}", int(self.clock() + self.lifetime))


class AsyncCountingCredential:
    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Future | None = None

    async def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.calls += 1
        if self.gate is not None:
            await self.gate
        return AccessToken(f"{SECRET}-{self.calls}", int(time.time() + 3600))

    async def close(self) -> None:
        pass


def test_static_token_is_sent_and_user_agent_set():
    seen: list[httpx.Request] = []
    with aca_kernel.SessionsClient("https://x.example/", SECRET, transport=httpx.MockTransport(
            listing_handler(seen))) as client:
        client.list_files()
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"
    assert seen[0].headers["user-agent"].startswith(f"aca-sessions/{aca_kernel.__version__} (Python ")


def test_aca_token_env_is_the_default_credential(monkeypatch):
    monkeypatch.setenv("ACA_TOKEN", SECRET)
    seen: list[httpx.Request] = []
    with aca_kernel.SessionsClient("https://x.example/", transport=httpx.MockTransport(
            listing_handler(seen))) as client:
        client.list_files()
    assert seen[0].headers["authorization"] == f"Bearer {SECRET}"


def test_token_credential_is_cached_and_uses_the_scope(monkeypatch):
    monkeypatch.setenv("ACA_TOKEN_SCOPE", "https://acasessions.io/.default")
    cred = CountingCredential()
    seen: list[httpx.Request] = []
    with aca_kernel.SessionsClient("https://x.example/", cred, transport=httpx.MockTransport(
            listing_handler(seen))) as client:
        for _ in range(3):
            client.list_files()
    assert cred.calls == 1 and cred.scopes == ["https://acasessions.io/.default"]
    assert {r.headers["authorization"] for r in seen} == {f"Bearer {SECRET}-1"}


@pytest.mark.parametrize("kwargs, minutes", [({}, 5), ({"token_refresh_minutes": 10}, 10)])
def test_token_refreshed_a_number_of_minutes_before_expiry(kwargs, minutes):
    clock = [1_000_000.0]
    cred = CountingCredential(lifetime=3600, clock=lambda: clock[0])
    seen: list[httpx.Request] = []
    with aca_kernel.SessionsClient("https://x.example/", cred, transport=httpx.MockTransport(listing_handler(seen)),
                                   **kwargs) as client:
        client._auth._cache.clock = lambda: clock[0]
        client.list_files()
        clock[0] += 3600 - minutes * 60 - 1  # still more than the margin left
        client.list_files()
        assert cred.calls == 1
        clock[0] += 2  # now inside the margin
        client.list_files()
    assert cred.calls == 2
    assert seen[-1].headers["authorization"] == f"Bearer {SECRET}-2"


async def test_async_token_refreshed_five_minutes_before_expiry_by_default():
    clock = [1_000_000.0]
    cred = CountingCredential(lifetime=3600, clock=lambda: clock[0])
    seen: list[httpx.Request] = []
    async with aca_kernel.aio.SessionsClient("https://x.example/", cred,
                                             transport=httpx.MockTransport(listing_handler(seen))) as client:
        client._auth._cache.clock = lambda: clock[0]
        await client.list_files()
        clock[0] += 3600 - 5 * 60 - 1
        await client.list_files()
        assert cred.calls == 1
        clock[0] += 2
        await client.list_files()
    assert cred.calls == 2


def test_negative_refresh_minutes_are_refused():
    with pytest.raises(aca_kernel.InvalidArgumentError, match="token_refresh_minutes"):
        aca_kernel.SessionsClient("https://x.example/", CountingCredential(), token_refresh_minutes=-1)


def test_concurrent_sync_requests_fetch_one_token():
    n = 8
    cred = CountingCredential()
    cred.release = threading.Event()
    seen: list[httpx.Request] = []
    client = aca_kernel.SessionsClient("https://x.example/", cred,
                                       transport=httpx.MockTransport(listing_handler(seen)))
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
    threads = [threading.Thread(target=client.list_files) for _ in range(n)]
    for t in threads:
        t.start()
    for _ in range(n):
        assert checked.acquire(timeout=60)
    cred.release.set()
    for t in threads:
        t.join(60)
    client.close()
    assert len(seen) == n and cred.calls == 1


async def test_concurrent_async_requests_fetch_one_token():
    n = 8
    cred = AsyncCountingCredential()
    cred.gate = asyncio.get_running_loop().create_future()
    seen: list[httpx.Request] = []
    async with aca_kernel.aio.SessionsClient("https://x.example/", cred,
                                             transport=httpx.MockTransport(listing_handler(seen))) as client:
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
        await asyncio.gather(*(client.list_files() for _ in range(n)))
    assert len(seen) == n and cred.calls == 1


async def test_async_client_accepts_a_sync_credential():
    cred = CountingCredential()
    seen: list[httpx.Request] = []
    async with aca_kernel.aio.SessionsClient("https://x.example/", cred,
                                             transport=httpx.MockTransport(listing_handler(seen))) as client:
        await client.list_files()
        await client.list_files()
    assert cred.calls == 1 and seen[0].headers["authorization"] == f"Bearer {SECRET}-1"


def test_sync_client_refuses_an_async_credential():
    with pytest.raises(aca_kernel.ConfigurationError, match="aio"):
        aca_kernel.SessionsClient("https://x.example/", AsyncCountingCredential())


@pytest.mark.parametrize("exc", [AzureAuthError("AADSTS700082: refresh token expired"),
                                 CredentialUnavailableError("no credential in the chain")])
def test_credential_errors_become_client_authentication_error(exc):
    class Failing:
        def get_token(self, *scopes, **kwargs):
            raise exc

    with aca_kernel.SessionsClient("https://x.example/", Failing(),
                                   transport=httpx.MockTransport(lambda r: pytest.fail("sent"))) as client:
        with pytest.raises(aca_kernel.ClientAuthenticationError) as info:
            client.execute("1")
    assert "az login" in str(info.value) and info.value.__cause__ is exc
    assert "https://dynamicsessions.io/.default" in str(info.value)


async def test_async_credential_errors_become_client_authentication_error():
    class Failing:
        async def get_token(self, *scopes, **kwargs):
            raise CredentialUnavailableError("EnvironmentCredential: not configured")

    async with aca_kernel.aio.SessionsClient("https://x.example/", Failing(), transport=httpx.MockTransport(
            lambda r: pytest.fail("sent"))) as client:
        with pytest.raises(aca_kernel.ClientAuthenticationError, match="az login"):
            await client.list_files()


def test_token_never_in_repr_logs_or_errors(caplog):
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


def test_credential_token_never_in_repr_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Request] = []
    cred = CountingCredential()
    with aca_kernel.SessionsClient("https://x.example/", cred, transport=httpx.MockTransport(
            listing_handler(seen))) as client:
        client.list_files()
        assert SECRET not in repr(client) and SECRET not in repr(client._auth)
    assert SECRET not in caplog.text


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


def test_a_rejected_token_is_not_reused():
    cred = CountingCredential()
    replies = [httpx.Response(401), httpx.Response(200, json={"value": []})]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return replies.pop(0)

    with aca_kernel.SessionsClient("https://x.example/", cred, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(aca_kernel.ClientAuthenticationError):
            client.list_files()
        assert client.list_files() == []
    assert cred.calls == 2
    assert [r.headers["authorization"] for r in seen] == [f"Bearer {SECRET}-1", f"Bearer {SECRET}-2"]
