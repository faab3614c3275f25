"""SessionKernel against real IPython kernels (sandboxed when bwrap is installed, as it is in CI).

Covers the service's execution semantics: result typing, streams, tracebacks, images, state, timeout, OOM, and
that nothing is left running after shutdown or interpreter exit.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _pool_http import LIVE

from aca_kernel.emulator.runtime import (
    ABORTED_MESSAGE,
    TIMEOUT_MESSAGE,
    ExecOutcome,
    SandboxConfig,
    SessionKernel,
    check_sandbox,
)
from aca_kernel.emulator.sandbox import MemoryCgroup

# The emulator's own kernels, not the service: nothing here runs against a live pool (ACA_TEST_LIVE=1).
pytestmark = [pytest.mark.emulator_only, pytest.mark.skipif(LIVE, reason="tests the emulator's session kernel")]

HAVE_BWRAP = subprocess.run(["sh", "-c", "command -v bwrap"], capture_output=True).returncode == 0
SANDBOX = [pytest.param(True, id="sandbox", marks=pytest.mark.skipif(not HAVE_BWRAP, reason="needs bwrap")),
           pytest.param(False, id="no-sandbox")]


def have(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def processes_with(marker: str) -> list[str]:
    """Command lines of live host processes that contain marker (zombies count as gone)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and pid != str(os.getpid()):
            found.append(f"{pid}: {cmdline}")
    return found


async def ok(kernel: SessionKernel, code: str, timeout: float = 60) -> ExecOutcome:
    outcome = await kernel.execute(code, timeout)
    assert outcome.status == "succeeded", f"{code!r} failed:\n{outcome.stderr}"
    return outcome


@pytest.mark.parametrize("sandboxed", SANDBOX)
async def test_result_typing_follows_the_service(make_kernel, sandboxed: bool) -> None:
    kernel = await make_kernel(enabled=sandboxed)
    table = [
        ("1+1", 2),
        ("'s'", "s"),
        ("x = 40\nx", 40),
        ("36.017857142857146", 36.017857142857146),
        ("True", True),
        ("None", None),
        ("y = None\ny", None),
        ("float('nan')", "nan"),
        ("float('-inf')", "-inf"),
        ("[1,2]", "[1, 2]"),
        ("{'a': 1}", "{'a': 1}"),
        ("print('only printed')", ""),
        ("z = 3", ""),
        ("1+1;", ""),
        ("def f():\n    return None\nf()", ""),
    ]
    if have("numpy"):
        table += [("import numpy as np\nnp.int64(5)", 5), ("np.float64('nan')", "nan"), ("np.bool_(True)", True),
                  ("np.arange(3)", "array([0, 1, 2])")]
    for code, expected in table:
        outcome = await ok(kernel, code)
        assert outcome.result == expected and type(outcome.result) is type(expected), (code, outcome.result)
    outcome = await ok(kernel, "print('hi')")
    assert outcome.stdout == "hi\n"
    assert outcome.execution_time_ms >= 0


async def test_stdout_holds_only_printed_text_and_stderr_the_printed_errors(make_kernel) -> None:
    kernel = await make_kernel()
    outcome = await ok(kernel, "import sys\nx = 40\nprint('Answer is', x)\nprint('warn', file=sys.stderr)\nx + 2")
    assert outcome.stdout == "Answer is 40\n"
    assert outcome.stderr == "warn\n"
    assert outcome.result == 42


async def test_exception_gives_plain_traceback_and_no_result(make_kernel) -> None:
    kernel = await make_kernel()
    outcome = await kernel.execute("print('before')\ndef boom():\n    return 1/0\nboom()", 60)
    assert outcome.status == "failed"
    assert outcome.result is None
    assert outcome.stdout == "before\n"
    assert "\x1b" not in outcome.stderr
    assert outcome.stderr.startswith("division by zero\n")
    assert "Traceback (most recent call last)" in outcome.stderr
    assert "----> 4 boom()" in outcome.stderr
    assert outcome.stderr.endswith("ZeroDivisionError: division by zero\n")

    syntax = await kernel.execute("x = {\n  'filename': 'T.csv'\n  'b': 1}", 60)
    assert syntax.status == "failed"
    # the observed service text: evalue straight into IPython's indented "Cell In[...]" block
    assert syntax.stderr.startswith("invalid syntax")
    assert "  Cell In[" in syntax.stderr and syntax.stderr.rstrip("\n").endswith("SyntaxError: invalid syntax")


@pytest.mark.skipif(not have("matplotlib"), reason="needs matplotlib")
async def test_matplotlib_figure_comes_back_as_png(make_kernel, tmp_path: Path) -> None:
    kernel = await make_kernel()
    outcome = await ok(kernel, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('plot.png')")
    assert set(outcome.result) == {"type", "format", "base64_data"}
    assert outcome.result["type"] == "image" and outcome.result["format"] == "png"
    png = base64.b64decode(outcome.result["base64_data"], validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert (kernel.data_dir / "plot.png").read_bytes().startswith(b"\x89PNG")
    # the inline backend closed the figure: the next cell has a plain value again
    assert (await ok(kernel, "5")).result == 5
    # a matplotlib object as last value (plt.title) still yields the figure
    titled = await ok(kernel, "plt.plot([3, 1])\nplt.title('t')")
    assert titled.result["type"] == "image"
    # another value wins over the figure
    both = await ok(kernel, "plt.plot([1, 3])\n7")
    assert both.result == 7


async def test_state_persists_across_executions(make_kernel) -> None:
    kernel = await make_kernel()
    await ok(kernel, "import math\ncounter = 1")
    await ok(kernel, "counter += 1")
    assert (await ok(kernel, "counter, math.pi > 3")).result == "(2, True)"
    with open(kernel.data_dir / "up.txt", "w") as f:
        f.write("uploaded")
    assert (await ok(kernel, "open('up.txt').read()")).result == "uploaded"


async def test_timeout_interrupts_and_keeps_the_kernel(make_kernel) -> None:
    kernel = await make_kernel()
    await ok(kernel, "kept = 'yes'")
    outcome = await kernel.execute("import time\nprint('started')\ntime.sleep(600)", 1)
    assert outcome.timed_out and not outcome.kernel_died
    assert outcome.status == "failed"
    assert outcome.stderr == TIMEOUT_MESSAGE
    assert outcome.result is None
    assert outcome.stdout == "started\n"
    assert kernel.alive
    assert (await ok(kernel, "kept")).result == "yes"


async def test_uninterruptible_cell_restarts_the_kernel(make_kernel) -> None:
    kernel = await make_kernel()
    kernel.interrupt_grace = 1.0
    await ok(kernel, "lost = 1")
    code = "import time\nwhile True:\n    try:\n        time.sleep(600)\n    except KeyboardInterrupt:\n        pass"
    outcome = await kernel.execute(code, 1)
    assert outcome.timed_out and outcome.stderr == TIMEOUT_MESSAGE
    assert kernel.alive
    assert (await ok(kernel, "'lost' in globals()")).result is False


async def test_kernel_exit_is_reported_and_the_session_continues(make_kernel) -> None:
    kernel = await make_kernel()
    outcome = await kernel.execute("print('bye', flush=True)\nimport os\nos._exit(3)", 60)
    assert outcome.kernel_died and outcome.status == "failed"
    # the service's words, then what happened (the emulator's addition)
    assert outcome.stderr == (f"{ABORTED_MESSAGE}: the session's Python process exited with status 3; variables "
                              "and imports are lost, files in /mnt/data are kept.")
    assert outcome.result is None
    assert not kernel.alive
    # the next call gets a fresh kernel
    assert (await ok(kernel, "21 * 2")).result == 42


@pytest.mark.skipif(not HAVE_BWRAP, reason="needs bwrap")
async def test_out_of_memory_aborts_the_execution(make_kernel) -> None:
    kernel = await make_kernel(memory="300M")
    if not kernel.memory_mode.startswith("cgroup"):
        pytest.skip(f"no writable memory cgroup here (memory limited by {kernel.memory_mode})")
    # b"x" * n touches every page, so the pages really count against the limit
    code = "chunks = []\nfor _ in range(40):\n    chunks.append(b'x' * (50 << 20))"
    outcome = await kernel.execute(code, 120)
    assert outcome.kernel_died and not outcome.timed_out
    assert outcome.status == "failed" and outcome.result is None
    assert outcome.stderr.startswith(f"{ABORTED_MESSAGE}: the session ran out of memory (its limit is 300 MiB)")
    assert (await ok(kernel, "1")).result == 1


async def test_without_cgroup_memory_falls_back_to_rlimit(make_kernel, monkeypatch) -> None:
    monkeypatch.setattr(MemoryCgroup, "create", classmethod(lambda cls, limit: None))
    kernel = await make_kernel(memory="300M")
    assert kernel.memory_mode == "rlimit"
    outcome = await kernel.execute("big = b'x' * (3 << 30)", 120)
    assert outcome.status == "failed" and "MemoryError" in outcome.stderr
    assert kernel.alive and (await ok(kernel, "2")).result == 2


@pytest.mark.parametrize("sandboxed", SANDBOX)
async def test_shutdown_leaves_no_processes_or_files(make_kernel, sandboxed: bool) -> None:
    kernel = await make_kernel(enabled=sandboxed)
    marker = "7319" + ("1" if sandboxed else "0")
    await ok(kernel, textwrap.dedent(f"""
        import subprocess
        subprocess.Popen(['sleep', '{marker}1'])
        subprocess.Popen(['sh', '-c', 'setsid sleep {marker}2 & sleep {marker}3'])
    """))
    assert processes_with(f"sleep {marker}")
    cgroup = kernel._cgroup
    await kernel.shutdown()
    assert processes_with(f"sleep {marker}") == []
    assert not kernel.alive
    assert cgroup is None or not cgroup.path.exists()
    assert not kernel.run_dir.exists()
    assert kernel.data_dir.exists()
    with pytest.raises(RuntimeError, match="shut down"):
        await kernel.execute("1", 10)


async def test_long_run_dir_uses_a_short_socket_dir(make_kernel, tmp_path: Path) -> None:
    kernel = await make_kernel(name="n" * 120)
    ipc = kernel._ipc_dir
    assert ipc is not None and len(str(ipc)) < 90
    assert (await ok(kernel, "3")).result == 3
    await kernel.shutdown()
    assert not ipc.exists()


async def test_start_failure_shows_the_kernel_log(make_kernel, tmp_path: Path) -> None:
    python = "/usr/bin/python3"
    if not os.path.exists(python) or have_in(python, "ipykernel"):
        pytest.skip("needs a system python without ipykernel")
    with pytest.raises(RuntimeError, match="cannot import ipykernel"):
        check_sandbox(SandboxConfig(python=python))
    with pytest.raises(RuntimeError, match="did not start") as info:
        await make_kernel(python=python)
    assert "No module named" in str(info.value)


def have_in(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


async def test_pool_secrets_do_not_reach_the_kernel(make_kernel, monkeypatch) -> None:
    monkeypatch.setenv("ACA_TOKEN", "secret-token-value")
    for sandboxed in ([True, False] if HAVE_BWRAP else [False]):
        kernel = await make_kernel(name=f"env{sandboxed}", enabled=sandboxed)
        outcome = await ok(kernel, "import os\n[k for k, v in os.environ.items() if 'secret-token' in v or k == 'ACA_TOKEN']")
        assert outcome.result == "[]"


@pytest.mark.parametrize("sandboxed", SANDBOX)
def test_kernels_left_running_die_with_the_interpreter(tmp_path: Path, sandboxed: bool) -> None:
    marker = "8427" + ("1" if sandboxed else "0")
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from aca_kernel.emulator.runtime import SandboxConfig, SessionKernel

        async def main():
            k = SessionKernel(Path({str(tmp_path / 'd')!r}), Path({str(tmp_path / 'r')!r}),
                              SandboxConfig(enabled={sandboxed}))
            await k.start()
            out = await k.execute("import subprocess; subprocess.Popen(['sleep', '{marker}'])", 60)
            assert out.status == 'succeeded', out
            print('started', flush=True)

        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "started" in proc.stdout, proc.stderr
    assert processes_with(f"sleep {marker}") == []


async def test_shutdown_during_execution_aborts_it(make_kernel) -> None:
    import asyncio

    kernel = await make_kernel()
    running = asyncio.ensure_future(kernel.execute("import time\ntime.sleep(600)", 300))
    await asyncio.sleep(0.5)
    await kernel.shutdown()
    outcome = await running
    assert outcome.status == "failed" and outcome.stderr == ABORTED_MESSAGE and outcome.kernel_died


def test_messages_of_an_unexpected_shape_are_ignored():
    # Code in the kernel holds the session key and can send any iopub message: none may break the collection.
    from aca_kernel.emulator.outcome import Collector

    collector = Collector()
    for msg in [
        {"msg_type": "stream", "content": {"name": "stdout", "text": 5}},
        {"msg_type": "stream", "content": {"name": ["stdout"], "text": "x"}},
        {"msg_type": "stream", "content": ["not", "a", "dict"]},
        {"content": {"name": "stdout", "text": "no type"}},
        {"msg_type": "display_data", "content": {"data": "not a dict"}},
        {"msg_type": "stream", "content": {"name": "stdout", "text": "kept"}},
        {"msg_type": "execute_result", "content": {"data": None}},
        {"msg_type": "error", "content": {"ename": "E", "evalue": "bad", "traceback": [1, "two"]}},
        {"msg_type": "status", "content": {"execution_state": "idle"}},
    ]:
        collector.add(msg)
    outcome = collector.outcome(1)
    assert collector.idle and outcome.status == "failed"
    assert outcome.stdout == "kept" and outcome.stderr == "bad\n1\ntwo\n"


FORGED = """
import json
k = get_ipython().kernel
s, parent = k.session, k.get_parent()
def raw(content, parent_header):
    msg = s.msg('stream', content={}, parent=parent)
    parts = [s.pack(msg['header']), parent_header, s.pack({}), content]
    s.send_raw(k.iopub_socket, parts)
raw(b'{not json', s.pack(parent['header']))           # signed, but the content does not parse
raw(s.pack({'name': 'stdout', 'text': 1}), s.pack(parent['header']))
raw(s.pack({'name': 'stdout', 'text': 'x'}), s.pack(['not', 'a', 'dict']))
print('after')
# and one that arrives between executions
import threading
threading.Timer(0.2, raw, (b'{not json', s.pack(parent['header']))).start()
"""


async def test_a_kernel_sending_malformed_messages_gets_an_answer(make_kernel) -> None:
    kernel = await make_kernel()
    outcome = await kernel.execute(FORGED, 30)
    assert outcome.status == "succeeded", outcome.stderr
    assert outcome.stdout.endswith("after\n")
    await asyncio.sleep(1)  # not a timing claim: lets the late message arrive before the next execute
    assert (await kernel.execute("1 + 1", 30)).result == 2
