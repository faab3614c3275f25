"""`aca-sessions sessions list|show|delete` against the real pool (and the local pool's default session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import LIVE

import aca_kernel

V1 = "2024-02-02-preview"
V2 = "2025-10-02-preview"


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("aca-sessions")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "aca_kernel"]


@pytest.fixture
def run(pool):
    def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {**os.environ, "ACA_TOKEN": pool.token or ""}
        for name in ("ACA_API_VERSION", "ACA_SESSION_ID"):
            base.pop(name, None)
        return subprocess.run([*_cli(), *args], capture_output=True, text=True, timeout=120,
                              env={**base, **(env or {})})

    return call


@pytest.fixture
def used_session(pool):
    sid = f"cli-{uuid.uuid4()}"
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, api_version=V2, session_id=sid) as client:
        client.upload_file(b"x", "keep.txt")
    return sid


def test_list_shows_the_pools_sessions(run, pool, used_session):
    out = run("sessions", "list", "--endpoint", pool.endpoint)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["IDENTIFIER", "CREATED", "LAST", "USED", "EXPIRES"]
    assert any(row.split()[0] == used_session for row in rows)
    assert "session:" not in out.stderr  # a pool-level call: no "new session" note
    listed = json.loads(run("sessions", "list", "--json", "--endpoint", pool.endpoint).stdout)
    mine = next(s for s in listed if s["identifier"] == used_session)
    assert mine["created_at"] and mine["expire_at"] and mine["etag"]


def test_show_and_delete(run, pool, used_session):
    shown = run("sessions", "show", used_session, "--endpoint", pool.endpoint, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["identifier"] == used_session
    text = run("sessions", "show", "--session", used_session, "--endpoint", pool.endpoint)
    assert text.stdout.splitlines()[0] == f"identifier: {used_session}"
    gone = run("sessions", "delete", used_session, "--endpoint", pool.endpoint)
    assert gone.returncode == 0 and gone.stdout.strip() == f"deleted session {used_session}"
    after = run("sessions", "show", used_session, "--endpoint", pool.endpoint)
    assert after.returncode == 3
    assert after.stderr.strip() == (f"aca-sessions: error: no session {used_session} in the pool (never used, "
                                    f"deleted, or expired after the pool's cooldown)")
    # Showing never creates the session it looks for.
    assert used_session not in run("sessions", "list", "--endpoint", pool.endpoint).stdout


def test_an_old_api_version_is_told_which_one_to_use(run, pool):
    out = run("sessions", "list", "--endpoint", pool.endpoint, env={"ACA_API_VERSION": V1})
    assert out.returncode == 3
    assert out.stderr.strip() == ("aca-sessions: error: `sessions list` needs api-version 2025-02-02-preview or "
                                  f"later, not {V1}: pass --api-version {V2}")


def test_delete_on_an_endpoint_needs_a_session(run, pool):
    out = run("sessions", "delete", "--endpoint", pool.endpoint)
    assert out.returncode == 2 and "name the session to delete" in out.stderr


@pytest.mark.skipif(LIVE, reason="local pool only")
def test_show_defaults_to_the_local_pools_default_session(tmp_path):
    env = {**os.environ, "ACA_LOCAL_POOL_DIR": str(tmp_path)}
    for name in ("ACA_POOL_MANAGEMENT_ENDPOINT", "ACA_SESSION_ID", "ACA_API_VERSION"):
        env.pop(name, None)
    try:
        assert subprocess.run([*_cli(), "exec", "-c", "1"], capture_output=True, timeout=120,
                              env=env).returncode == 0
        from aca_kernel._localpool import _read_state

        default = _read_state(tmp_path)["session_id"]
        out = subprocess.run([*_cli(), "sessions", "show"], capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == f"identifier: {default}"
    finally:
        subprocess.run([*_cli(), "pool", "stop"], capture_output=True, timeout=60, env=env)
