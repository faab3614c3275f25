"""The "ACA Sessions" kernel when what it stands on fails: the session's kernel killed mid-cell, the local pool
stopped and restarted under a running notebook, the pool frozen mid-cell, Ctrl-C while the pool starts.

Assertions are on what a user sees (reply status, ename, text, a marker file written exactly once), not on how
the kernel sends cells.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import LIVE, pools_started_in, wait_until

from .conftest import write_kernelspec
from .helpers import drain, run, text

pytestmark = pytest.mark.skipif(LIVE, reason="faults of the local pool and its processes")


@pytest.fixture
def own_pool(kernelspecs: Path, tmp_path: Path):
    """A kernelspec whose kernel starts a local pool of its own (state in a private folder), stopped after."""
    state = tmp_path / "state"
    made: list[str] = []

    def make(**env: str) -> tuple[str, Path]:
        name = f"aca_test_faults_{uuid.uuid4().hex[:8]}"
        write_kernelspec(kernelspecs, name, {"ACA_POOL_MANAGEMENT_ENDPOINT": "", "ACA_TOKEN": "",
                                             "ACA_LOCAL_POOL_DIR": str(state), "ACA_PROGRESS_AFTER": "60", **env})
        made.append(name)
        return name, state

    yield make
    _cli("pool", "stop", state=state)
    for pid in pools_started_in(state):
        os.kill(pid, signal.SIGKILL)


def _cli(*args: str, state: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ACA_POOL_MANAGEMENT_ENDPOINT", "ACA_LOCAL_POOL_ARGS")}
    env["ACA_LOCAL_POOL_DIR"] = str(state)
    return subprocess.run([sys.executable, "-m", "aca_kernel", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _state_pid(state: Path) -> int:
    import json

    return int(json.loads((state / "aca-sessions-pool.json").read_text())["pid"])


def _wait_for_input(kc, msg_id: str) -> None:
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            return


def _reply(kc, msg_id: str, timeout: float = 120) -> dict:
    while True:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


def _kernel_in(marker: str) -> int | None:
    """The pid of the session kernel whose /mnt/data holds ``marker`` (its working directory there)."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            # /proc/<pid>/cwd leads into the sandbox's own view of its working directory
            if b"ipykernel_launcher" in Path(f"/proc/{pid}/cmdline").read_bytes() and \
                    Path(f"/proc/{pid}/cwd/{marker}").exists():
                return pid
        except OSError:
            continue
    return None


def test_the_session_kernel_killed_mid_cell_is_reported_and_the_cell_is_not_run_again(kernel):
    _km, kc = kernel("aca_test")
    marker = f"marker-{uuid.uuid4().hex}"
    reply, _ = run(kc, "kept = 1")
    assert reply["status"] == "ok"
    msg_id = kc.execute(f"open({marker!r}, 'a').write('ran\\n')\nimport time\ntime.sleep(120)")
    pid = wait_until(lambda: _kernel_in(marker), timeout=60)
    assert pid, "the session kernel was not found"
    os.kill(pid, signal.SIGKILL)
    reply = _reply(kc, msg_id)
    drain(kc)
    assert reply["status"] == "error"
    said = reply["evalue"] + "\n".join(reply["traceback"])
    assert "Execution aborted" in said and "SIGKILL" in said and "files in /mnt/data are kept" in said
    # the next cell runs in a fresh kernel: the files stayed, the variables did not, nothing ran twice
    reply, out = run(kc, f"print(open({marker!r}).read(), end='')\nprint('kept' in dir())")
    assert reply["status"] == "ok"
    assert text(out) == "ran\nFalse\n"


def test_the_pool_stopped_and_restarted_under_a_running_notebook(kernel, own_pool):
    name, state = own_pool()
    _km, kc = kernel(name)
    reply, out = run(kc, "built = 'on the first pool'\nprint(built)", timeout=120)
    assert reply["status"] == "ok" and text(out) == "on the first pool\n"
    first = _state_pid(state)
    assert _cli("pool", "stop", state=state).returncode == 0
    # stopped: the next cell starts the user's pool again and says so in one line, then what was lost
    reply, out = run(kc, "print('on the second pool')\nprint('built' in dir())", timeout=120)
    assert reply["status"] == "ok", reply
    assert text(out).endswith("on the second pool\nFalse\n")
    notice = text(out, "stderr")
    assert len([line for line in notice.splitlines() if "stopped or restarted" in line]) == 1
    lost = [line for line in notice.splitlines() if "lost its state" in line]
    assert len(lost) == 1 and "%aca_replay" in lost[0] and "1 cell(s)" in lost[0], notice
    assert "the local session pool it ran on was replaced by a new one" in lost[0] and "recycled" not in lost[0]
    assert notice.index("stopped or restarted;") < notice.index("lost its state")
    second = _state_pid(state)
    assert second != first and pools_started_in(state) == [second]
    # replaced by another command while the notebook runs: the notebook follows
    assert _cli("pool", "stop", state=state).returncode == 0
    assert _cli("pool", "start", state=state).returncode == 0
    third = _state_pid(state)
    reply, out = run(kc, "print('on the third pool')", timeout=120)
    assert reply["status"] == "ok" and "on the third pool" in text(out)
    assert "replaced by a new one" in text(out, "stderr")
    assert pools_started_in(state) == [third]
    # and %aca_new_session works there too
    reply, out = run(kc, "%aca_new_session")
    assert reply["status"] == "ok"
    reply, out = run(kc, "print('fresh')")
    assert reply["status"] == "ok" and "fresh" in text(out)


def test_the_pool_frozen_mid_cell_the_kernel_stays_interruptible_and_the_cell_runs_once(kernel, own_pool):
    name, state = own_pool()
    km, kc = kernel(name)
    marker = f"frozen-{uuid.uuid4().hex}"
    reply, _ = run(kc, "1", timeout=120)
    assert reply["status"] == "ok"
    pool = _state_pid(state)
    msg_id = kc.execute(f"import time\ntime.sleep(2)\nopen({marker!r}, 'a').write('ran\\n')\n'finished'")
    _wait_for_input(kc, msg_id)
    os.kill(pool, signal.SIGSTOP)
    try:
        time.sleep(1)  # the request is in flight to a pool that cannot answer
        km.interrupt_kernel()
        reply = _reply(kc, msg_id, timeout=30)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
        assert "may still be running" in reply["evalue"]
        drain(kc)
        reply, out = run(kc, "%%local\nprint('the kernel answers')")
        assert text(out) == "the kernel answers\n"
    finally:
        os.kill(pool, signal.SIGCONT)
    # thawed: the same pool (not replaced), and the interrupted cell ran at most once: it may have been stopped by
    # the interrupt that reached the pool once it answered again, but it never ran twice
    reply, out = run(kc, f"import os\nprint(open({marker!r}).read() if os.path.exists({marker!r}) else '', end='')",
                     timeout=120)
    assert reply["status"] == "ok", (reply.get("ename"), reply.get("evalue"))
    assert text(out) in ("", "ran\n")
    assert _state_pid(state) == pool


def _slow_python(tmp_path: Path, seconds: float) -> str:
    path = tmp_path / "slow-python"
    path.write_text(f"#!/bin/sh\nsleep {seconds}\nexec {sys.executable} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_ctrl_c_in_the_first_cell_while_the_pool_starts_leaves_no_untracked_pool(kernel, own_pool, tmp_path):
    name, state = own_pool(ACA_LOCAL_POOL_ARGS=f"--python {_slow_python(tmp_path, 3)}")
    km, kc = kernel(name)
    msg_id = kc.execute("print('first cell')")
    assert wait_until(lambda: pools_started_in(state), timeout=60)  # the pool is starting (slowly)
    km.interrupt_kernel()
    reply = _reply(kc, msg_id, timeout=60)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    drain(kc)
    assert wait_until(lambda: not pools_started_in(state), timeout=30)  # what was started is gone
    # the next cell starts one pool, which `aca-sessions pool stop` sees and stops
    reply, out = run(kc, "print('second cell')", timeout=180)
    assert reply["status"] == "ok" and "second cell" in text(out)
    assert len(pools_started_in(state)) == 1
    stopped = _cli("pool", "stop", state=state)
    assert "stopped the local session pool" in stopped.stdout
    assert wait_until(lambda: not pools_started_in(state), timeout=30)
