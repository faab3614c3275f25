"""Plain-httpx helpers for the emulator's API tests (shared by tests/emulator/test_api_*.py).

The same tests run against the real service with ``ACA_TEST_LIVE=1`` (see tests/conftest.py); tests of
behaviour the reference marks UNKNOWN, or of emulator-only features, are skipped there with ``emulator_only``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import pytest

V1 = "2024-02-02-preview"
V2410 = "2024-10-02-preview"
V2502 = "2025-02-02-preview"
V2510 = "2025-10-02-preview"
V2 = (V2410, V2502, V2510)

LIVE = os.environ.get("ACA_TEST_LIVE") == "1" and bool(os.environ.get("ACA_POOL_MANAGEMENT_ENDPOINT"))


def emulator_only(func: Any) -> Any:
    """Behaviour the reference marks UNKNOWN, or that only the emulator has: skipped against a real pool.

    Also marked ``emulator_only`` so ``-m "not emulator_only"`` deselects these tests.
    """
    skip = pytest.mark.skipif(LIVE, reason="emulator behaviour (UNKNOWN upstream or emulator-only)")
    return pytest.mark.emulator_only(skip(func))


def token_for(pool: Any) -> str:
    if pool.token:
        return pool.token
    from azure.identity import DefaultAzureCredential  # live mode without ACA_TOKEN only

    return DefaultAzureCredential().get_token("https://dynamicsessions.io/.default").token


class PoolClient(httpx.Client):
    """An httpx client that deletes, when closed, every session it named: the shared pool holds a kernel per
    session until its cooldown, so tests must not leave dozens behind (nor hit --max-sessions)."""

    def __init__(self, **kwargs: Any) -> None:
        self.identifiers: set[str] = set()
        super().__init__(event_hooks={"request": [self._record]}, **kwargs)

    def _record(self, request: httpx.Request) -> None:
        ident = request.url.params.get("identifier")
        if ident:
            self.identifiers.add(ident)

    def close(self) -> None:
        if not self.is_closed:
            for ident in sorted(self.identifiers):
                delete_session(self, ident)
        super().close()


def delete_session(http: httpx.Client, identifier: str) -> None:
    try:
        http.delete("session", params={"api-version": V2510, "identifier": identifier})
    except httpx.HTTPError:
        pass  # best-effort cleanup: the cooldown removes it anyway


def connect(pool: Any, endpoint: str | None = None, *, token: str | None = None) -> PoolClient:
    """An httpx client for ``endpoint`` (default: the pool's) that sends the pool's bearer token."""
    base = (endpoint or pool.endpoint).rstrip("/") + "/"
    headers = {"Authorization": f"Bearer {token if token is not None else token_for(pool)}"}
    return PoolClient(base_url=base, headers=headers, timeout=120)


def new_id() -> str:
    return str(uuid.uuid4())


def q(identifier: str | None, version: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"api-version": version}
    if identifier is not None:
        params["identifier"] = identifier
    params.update(extra)
    return params


def v1_execute(http: httpx.Client, identifier: str, code: str) -> dict[str, Any]:
    body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": code}}
    r = http.post("code/execute", params=q(identifier, V1), json=body)
    assert r.status_code == 200, r.text
    return r.json()["properties"]


def v2_execute(http: httpx.Client, identifier: str, code: str, version: str = V2510, **fields: Any) -> dict:
    body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": code, **fields}
    r = http.post("executions", params=q(identifier, version), json=body)
    assert r.status_code in (200, 202), r.text
    return r.json()


def error_code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]
