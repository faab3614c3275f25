"""The user's background pool under faults: interrupted starts, stops under a running kernel, replacement,
idle exit, exposure. Every test has its own ACA_LOCAL_POOL_DIR and stops what it started."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _proc import alive
from conftest import LIVE, pools_started_in, wait_until

from aca_kernel import _localpool
from aca_kernel._localpool import LocalPoolError, ensure_local_pool, local_pool_status, stop_local_pool

pytestmark = pytest.mark.skipif(LIVE, reason="the local pool is emulator-only")


def slow_python(tmp_path: Path, seconds: float) -> str:
    """An interpreter that takes ``seconds`` to start: a pool using it is slow to come up (its ipykernel probe)."""
    path = tmp_path / "slow-python"
    path.write_text(f"#!/bin/sh\nsleep {seconds}\nexec {sys.executable} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_ctrl_c_while_the_pool_starts_leaves_no_untracked_pool(pool_dir: Path, tmp_path: Path):
    env = dict(os.environ, ACA_LOCAL_POOL_ARGS=f"--python {slow_python(tmp_path, 30)}")
    starter = subprocess.Popen([sys.executable, "-c", "from aca_kernel._localpool import ensure_local_pool\n"
                                "ensure_local_pool(timeout=120)"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: pools_started_in(pool_dir), timeout=60)
        starter.send_signal(signal.SIGINT)
        _, err = starter.communicate(timeout=60)
        assert "KeyboardInterrupt" in err
    finally:
        starter.kill()
    # nothing runs that the state file does not record (here: nothing at all)
    assert wait_until(lambda: not pools_started_in(pool_dir), timeout=30)
    assert local_pool_status() is None
    # the next start makes exactly one pool, and `pool stop` sees it
    pool = ensure_local_pool()
    assert pools_started_in(pool_dir) == [pool.pid]
    assert stop_local_pool() is True
    assert wait_until(lambda: not pools_started_in(pool_dir), timeout=30)


def test_a_process_that_never_reaps_is_not_taken_for_running():
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        print(pid, flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        zombie = int(parent.stdout.readline())
        assert wait_until(lambda: not alive(zombie), timeout=30)
        assert Path(f"/proc/{zombie}").exists()  # a zombie: kill(pid, 0) still succeeds
        assert _localpool._running(zombie) is False
    finally:
        parent.kill()
        parent.wait()


def test_pool_stop_under_the_kernel_that_started_it_leaves_no_zombie(pool_dir: Path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from aca_kernel._localpool import ensure_local_pool\n"
                               "print(ensure_local_pool().pid, flush=True)\ntime.sleep(300)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        pid = int(holder.stdout.readline())
        assert stop_local_pool() is True
        # the process that started the pool (a kernel, in real life) reaped it: nothing left to look alive
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=30)
        assert local_pool_status() is None
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_a_public_bind_of_the_background_pool_is_refused(pool_dir: Path, monkeypatch, host: str):
    monkeypatch.setenv("ACA_LOCAL_POOL_ARGS", f"--host {host}")
    with pytest.raises(LocalPoolError, match="must not bind the background pool"):
        ensure_local_pool()
    monkeypatch.setenv("ACA_LOCAL_POOL_ARGS", f"--host={host}")
    with pytest.raises(LocalPoolError, match=f"emulator --host {host}"):
        ensure_local_pool()
    assert not pools_started_in(pool_dir)


def test_the_background_pool_exits_when_idle_and_the_next_call_starts_it_again(pool_dir: Path, monkeypatch):
    assert "--idle-exit" in _localpool._emulator_argv()
    monkeypatch.setenv("ACA_LOCAL_POOL_ARGS", "--idle-exit 1 --ready 0")
    first = ensure_local_pool()
    assert wait_until(lambda: not _localpool._running(first.pid), timeout=60)
    assert local_pool_status() is None
    second = ensure_local_pool()
    assert second.started and second.pid != first.pid


def test_the_background_pool_keeps_session_files_out_of_the_state_folder(pool_dir: Path):
    from _pool_http import V1, connect, q

    pool = ensure_local_pool()
    with connect(pool, pool.endpoint, token=pool.token) as http:
        r = http.post("code/execute", params=q(pool.session_id, V1),
                      json={"properties": {"code": "open('/proc/self/mountinfo').read()"}})
        mountinfo = r.json()["properties"]["result"]
    (data_line,) = [line for line in mountinfo.splitlines() if " /mnt/data " in line]
    host_path = data_line.split()[3]
    assert str(pool_dir) not in host_path and str(Path.home()) not in host_path
    assert not any(pool_dir.rglob("sessions"))


def test_a_notebook_follows_a_pool_that_was_stopped_or_replaced(pool_dir: Path):
    from aca_kernel.notebook._context import ACAContext

    ctx = ACAContext()
    client = ctx.client()
    assert client.execute("'first'").result == "first"
    old = ctx.local_pool
    ctx.local_note_pending = False
    # stopped: the next call starts the user's pool again
    assert stop_local_pool() is True
    client = ctx.client()
    assert client.endpoint.rstrip("/") != old.endpoint
    assert client.execute("'second'").result == "second"
    assert ctx.local_note_pending and "stopped or restarted" in ctx.local_pool_note
    assert ctx.local_pool.endpoint in ctx.local_pool_note
    # replaced by another command: the notebook finds the new one
    ctx.local_note_pending = False
    replaced = ctx.local_pool
    stop_local_pool()
    subprocess.run([sys.executable, "-m", "aca_kernel", "pool", "start"], check=True, capture_output=True,
                   timeout=120)
    assert ctx.client().execute("'third'").result == "third"
    assert ctx.local_pool.pid != replaced.pid and ctx.local_pool.pid == _localpool._read_state(pool_dir)["pid"]
    # killed outright: the same
    os.kill(ctx.local_pool.pid, signal.SIGKILL)
    assert wait_until(lambda: not _localpool._running(ctx.local_pool.pid), timeout=30)
    assert ctx.client().execute("'fourth'").result == "fourth"
    ctx.close()


def test_an_unchanged_pool_is_kept(pool_dir: Path):
    from aca_kernel.notebook._context import ACAContext

    ctx = ACAContext()
    client = ctx.client()
    client.execute("1")
    assert ctx.client() is client and not ctx._replaced_note
    ctx.close()


def test_lab_help_starts_no_pool(pool_dir: Path):
    r = subprocess.run([sys.executable, "-m", "aca_kernel", "lab", "--help"], capture_output=True, text=True,
                       timeout=120, env={k: v for k, v in os.environ.items() if k != "ACA_POOL_MANAGEMENT_ENDPOINT"})
    assert r.returncode == 0, r.stderr
    assert "local session pool" not in r.stderr
    assert not (pool_dir / _localpool.STATE_FILE).exists() and not pools_started_in(pool_dir)


def test_lab_kernels_find_the_pool_themselves(pool_dir: Path, monkeypatch):
    from aca_kernel import cli

    captured: dict[str, dict[str, str]] = {}

    def execve(path, argv, env):  # instead of becoming JupyterLab
        captured["env"] = dict(env)
        raise SystemExit(0)

    monkeypatch.delenv("ACA_POOL_MANAGEMENT_ENDPOINT", raising=False)
    monkeypatch.setattr(os, "execve", execve)
    with pytest.raises(SystemExit):
        cli.cmd_lab(["--no-browser"])
    env = captured["env"]
    # no fixed endpoint: kernels show the local-pool note and follow the pool if it is restarted
    assert "ACA_POOL_MANAGEMENT_ENDPOINT" not in env and "ACA_TOKEN" not in env
    assert env["ACA_LOCAL_POOL_DIR"] == str(pool_dir)
    assert local_pool_status() is not None


def test_verbose_logs_never_show_endpoint_credentials(pool):
    endpoint = pool.endpoint.replace("http://", "http://alice:hunter2@") + "/?sig=SECRET-SIGNATURE"
    env = dict(os.environ, ACA_TOKEN=pool.token)
    for args in (["exec", "-c", "1 + 1"], ["files", "ls"]):
        r = subprocess.run([sys.executable, "-m", "aca_kernel", "-v", *args, "--endpoint", endpoint],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        assert "HTTP Request:" in r.stderr  # httpx's own line is there, redacted
        for secret in ("hunter2", "alice", "SECRET-SIGNATURE", pool.token):
            assert secret not in r.stdout + r.stderr
