"""The pool's process: capped as a whole, reclaims what a killed pool left, exits when idle, stops cleanly."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
from _pool_http import V1, V2510, connect, error_code, q, v1_execute
from _proc import processes_mentioning
from conftest import start_pool, wait_until

pytestmark = pytest.mark.emulator_only


def _prefixed(p, pool: str) -> str:
    return p.pool_endpoint(pool)


def test_the_session_cap_holds_for_the_whole_process_across_pool_names(make_pool):
    p = make_pool("--ready", "0", "--max-sessions", "2", "--max-total-sessions", "3")
    made = 0
    for name in ("a", "b", "c"):
        with connect(p, _prefixed(p, name)) as http:
            http.identifiers = set()  # kept until the end of the test
            for _ in range(2):
                r = http.get("files", params=q(str(uuid.uuid4()), V2510))
                if r.status_code == 200:
                    made += 1
                else:
                    assert r.status_code == 404 and error_code(r) == "SessionPoolMaxSessionsReached"
                    assert "--max-total-sessions" in r.json()["error"]["message"]
    assert made == 3


def test_without_the_flag_the_whole_process_is_capped_too(make_pool):
    p = make_pool("--ready", "0", "--max-sessions", "1")
    answers = []
    for i in range(105):
        with connect(p, _prefixed(p, f"pool{i}")) as http:
            http.identifiers = set()
            answers.append(http.get("files", params=q(str(uuid.uuid4()), V1)).status_code)
    assert answers.count(200) == 100 and answers.count(404) == 5


def _run_root_of(p) -> Path:
    (root,) = {Path(pid_cmd) for pid_cmd in _kernel_connection_files(p.proc.pid)}
    return root


def _kernel_connection_files(pool_pid: int) -> list[str]:
    """The run roots (/tmp/aca-XXXX) of the session kernels below ``pool_pid``."""
    roots = []
    for pid in processes_mentioning("/ipc/kernel.json"):
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        conn = next((c.decode() for c in cmd if c.endswith(b"/ipc/kernel.json")), None)
        if conn and _descends_from(pid, pool_pid):
            roots.append(str(Path(conn).parents[2]))
    return roots


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def test_a_pool_killed_with_sigkill_is_cleaned_up_by_the_next_one(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    first = start_pool(data, "--ready", "1")
    try:
        with connect(first) as http:
            http.identifiers = set()  # the pool is killed below: nothing to delete
            ident = str(uuid.uuid4())
            assert v1_execute(http, ident, "open('/mnt/data/user-file.txt', 'w').write('mine')")["status"] == "Success"
        assert wait_until(lambda: len(_kernel_connection_files(first.proc.pid)) >= 2, timeout=60)
        run_root = _run_root_of(first)
        kernels = processes_mentioning(str(run_root) + "/")
        assert kernels and any((data / "sessions").iterdir())
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        first.stop()
    second = start_pool(data, "--ready", "0")
    try:
        # the dead pool's kernels, run folder and session folders (user files included) go
        assert wait_until(lambda: not processes_mentioning(str(run_root) + "/"), timeout=60)
        assert wait_until(lambda: not run_root.exists(), timeout=60)
        assert wait_until(lambda: not any((data / "sessions").glob("*")), timeout=60)
        assert any("reclaimed what a stopped pool" in line for line in second.output)
    finally:
        second.stop()
    assert [str(x) for x in data.rglob("*")] == []


def test_a_killed_pool_with_its_own_temporary_folder_is_cleaned_up_too(tmp_path: Path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "aca_kernel.emulator", "--port", "0", "--token", "t",
                             "--ready", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("pool endpoint:")
        own = None
        for line in iter(proc.stderr.readline, ""):  # type: ignore[union-attr]
            if "(data in " in line:
                own = Path(line.split("(data in ")[1].split(",")[0])
                break
        assert own is not None and own.is_dir()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert own.exists()
    other = start_pool(tmp_path, "--ready", "0")  # a pool with another data folder reclaims it
    try:
        assert wait_until(lambda: not own.exists(), timeout=60)
    finally:
        other.stop()


def test_idle_exit_stops_an_empty_pool_and_waits_for_live_sessions(tmp_path: Path):
    p = start_pool(tmp_path, "--ready", "1", "--idle-exit", "1", "--cooldown", "600")
    try:
        with connect(p) as http:
            ident = str(uuid.uuid4())
            http.identifiers = set()
            assert v1_execute(http, ident, "1")["status"] == "Success"
            # a live session keeps it up well past the idle time
            assert not wait_until(lambda: p.proc.poll() is not None, timeout=4)
            assert http.delete("session", params=q(ident, V2510)).status_code == 204
        assert wait_until(lambda: p.proc.poll() is not None, timeout=60)
        assert p.proc.returncode == 0
        assert any("--idle-exit" in line for line in p.output)
    finally:
        p.stop()
    assert [str(x) for x in tmp_path.rglob("*")] == []


def test_ready_kernels_alone_do_not_count_as_activity(tmp_path: Path):
    p = start_pool(tmp_path, "--ready", "2", "--idle-exit", "1")
    try:
        assert wait_until(lambda: p.proc.poll() is not None, timeout=60)
        assert p.proc.returncode == 0
    finally:
        p.stop()
    assert not processes_mentioning(str(tmp_path))
    assert os.listdir(tmp_path) == []
