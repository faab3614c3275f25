"""The user's local session pool: started once, reused, shared under a lock, stopped, recovered when stale.

Every test points ACA_LOCAL_POOL_DIR at its own directory and stops its pool at the end.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import LIVE, wait_until

from aca_kernel import _localpool
from aca_kernel._localpool import LocalPoolError, ensure_local_pool, local_pool_status, stop_local_pool

pytestmark = pytest.mark.skipif(LIVE, reason="the local pool is emulator-only")


def _gone(pid: int) -> bool:
    _localpool._reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _files_status(endpoint: str, token: str, session: str) -> int:
    r = httpx.get(endpoint.rstrip("/") + "/files", timeout=30,
                  params={"api-version": "2024-02-02-preview", "identifier": session},
                  headers={"Authorization": f"Bearer {token}"})
    return r.status_code


def test_start_then_reuse(pool_dir: Path):
    first = ensure_local_pool()
    assert first.started is True
    assert first.endpoint.startswith("http://127.0.0.1:")
    assert first.session_id
    assert first.token not in repr(first)
    assert _files_status(first.endpoint, first.token, first.session_id) == 200
    assert _files_status(first.endpoint, "wrong-token", first.session_id) == 401

    state_file = pool_dir / _localpool.STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert json.loads(state_file.read_text())["pid"] == first.pid

    second = ensure_local_pool()
    assert second.started is False
    assert (second.pid, second.endpoint, second.token, second.session_id) == (
        first.pid, first.endpoint, first.token, first.session_id)
    assert local_pool_status() == second

    # The token is in no command line (ps shows those to every user), no log, and no file but the state.
    assert first.token.encode() not in Path(f"/proc/{first.pid}/cmdline").read_bytes()
    assert first.token not in Path(first.log_file).read_text()
    assert sorted(p.name for p in pool_dir.iterdir() if p.is_file()) == sorted(
        [_localpool.STATE_FILE, _localpool.LOCK_FILE, _localpool.LOG_FILE])


def test_two_concurrent_callers_start_one_pool(pool_dir: Path):
    script = ("import json; from aca_kernel._localpool import ensure_local_pool; p = ensure_local_pool(); "
              "print(json.dumps([p.pid, p.started, p.endpoint]))")
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert results[0][0] == results[1][0]  # one pid
    assert results[0][2] == results[1][2]  # one endpoint
    assert sorted(r[1] for r in results) == [False, True]  # one started it, the other reused it


def test_stop(pool_dir: Path):
    pool = ensure_local_pool()
    assert stop_local_pool() is True
    assert wait_until(lambda: _gone(pool.pid), timeout=30)
    assert not (pool_dir / _localpool.STATE_FILE).exists()
    assert local_pool_status() is None
    assert stop_local_pool() is False


def test_stale_state_is_recovered(pool_dir: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pool_dir.mkdir(parents=True)
    _localpool._write_state(pool_dir, {"pid": dead.pid, "endpoint": "http://127.0.0.1:9/", "token": "old"})
    assert local_pool_status() is None
    pool = ensure_local_pool()
    assert pool.started is True
    assert pool.pid != dead.pid
    assert _files_status(pool.endpoint, pool.token, pool.session_id) == 200


def test_state_naming_an_unrelated_live_process_is_not_trusted_or_killed(pool_dir: Path):
    pool_dir.mkdir(parents=True)
    # Our own pid is alive but is not a pool: it must be ignored, never signalled.
    _localpool._write_state(pool_dir, {"pid": os.getpid(), "endpoint": "http://127.0.0.1:9/", "token": "x"})
    pool = ensure_local_pool()
    assert pool.started is True
    assert pool.pid != os.getpid()


def test_corrupt_state_file_is_replaced(pool_dir: Path):
    pool_dir.mkdir(parents=True)
    (pool_dir / _localpool.STATE_FILE).write_text("{not json")
    assert ensure_local_pool().started is True


def test_start_failure_names_the_log(pool_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ACA_LOCAL_POOL_ARGS", "--no-such-emulator-option")
    with pytest.raises(LocalPoolError) as info:
        ensure_local_pool(timeout=60)
    assert str(pool_dir / _localpool.LOG_FILE) in str(info.value)
    assert not (pool_dir / _localpool.STATE_FILE).exists()


def test_token_in_pool_args_is_refused(pool_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ACA_LOCAL_POOL_ARGS", "--token chosen")
    with pytest.raises(LocalPoolError, match="must not set --token"):
        ensure_local_pool()


def test_pool_cli_status_start_stop(pool_dir: Path):
    env = dict(os.environ, ACA_LOCAL_POOL_DIR=str(pool_dir))
    cli = [sys.executable, "-m", "aca_kernel", "pool"]

    def run(action: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, action], env=env, capture_output=True, text=True, timeout=120)

    assert run("status").returncode == 1
    started = run("start")
    assert started.returncode == 0, started.stderr
    assert "endpoint: http://127.0.0.1:" in started.stdout
    token = _localpool._read_state(pool_dir)["token"]
    status = run("status")
    assert status.returncode == 0
    assert "running" in status.stdout
    assert "sessions: 0" in status.stdout
    assert token not in started.stdout + started.stderr + status.stdout + status.stderr
    stopped = run("stop")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stdout
    assert run("status").returncode == 1


def test_an_unsandboxed_pool_is_recorded_and_the_kernel_note_warns(pool_dir: Path, monkeypatch: pytest.MonkeyPatch):
    # Without bubblewrap the pool falls back to --no-sandbox; the user must hear that their sessions are exposed.
    from aca_kernel.notebook._context import ACAContext

    monkeypatch.setenv("ACA_LOCAL_POOL_ARGS", "--no-sandbox")
    pool = ensure_local_pool()
    assert pool.sandboxed is False
    assert ensure_local_pool().sandboxed is False  # reuse reads it back from the state file
    ctx = ACAContext()
    ctx.local_pool = pool
    assert "NOT sandboxed" in ctx.local_pool_note and "bubblewrap" in ctx.local_pool_note


def test_a_sandboxed_pool_note_has_no_warning(pool_dir: Path):
    from aca_kernel.notebook._context import ACAContext

    if not _localpool.shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    ctx = ACAContext()
    ctx.local_pool = ensure_local_pool()
    assert ctx.local_pool.sandboxed is True
    assert ctx.local_pool_note == "running on the local session pool — set ACA_POOL_MANAGEMENT_ENDPOINT to use Azure"
