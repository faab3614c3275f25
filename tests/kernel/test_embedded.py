"""No endpoint configured: the kernel finds or starts the user's local session pool (isolated state dir here)."""

from __future__ import annotations

import json

import jupyter_kernel_test
from jupyter_client.manager import start_new_kernel

from aca_kernel._localpool import STATE_FILE

from .helpers import run, text
from .test_protocol import _Samples


def test_first_remote_cell_says_it_runs_on_the_local_pool(local_pool_dir):
    km, kc = start_new_kernel(kernel_name="aca_test_local")
    try:
        _, out = run(kc, "%aca_session")
        assert "local session pool" in text(out) and "not started yet" in text(out)
        assert not (local_pool_dir / STATE_FILE).exists()  # kernel start and local magics start no pool
        reply, out = run(kc, "print('hello')\n6 * 7", timeout=120)
        assert reply["status"] == "ok"
        first = out[0]
        assert first["msg_type"] == "stream" and first["content"]["name"] == "stderr"
        assert "running on the local session pool" in first["content"]["text"]
        assert "ACA_POOL_MANAGEMENT_ENDPOINT" in first["content"]["text"]
        assert text(out) == "hello\n"
        assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["42"]
        reply, out = run(kc, "print('again')")
        assert "local session pool" not in text(out, "stderr")  # said once
        _, out = run(kc, "%aca_session")
        assert "(local session pool)" in text(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    # the pool outlives the kernel, and the next kernel reuses it rather than starting another
    state = json.loads((local_pool_dir / STATE_FILE).read_text())
    km, kc = start_new_kernel(kernel_name="aca_test_local")
    try:
        reply, out = run(kc, "7 * 6", timeout=120)
        assert reply["status"] == "ok"
        assert "running on the local session pool" in text(out, "stderr")
        assert json.loads((local_pool_dir / STATE_FILE).read_text())["pid"] == state["pid"]
        _, out = run(kc, "%aca_session")
        assert state["endpoint"].rstrip("/") in text(out)
        assert state["token"] not in text(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


class TestEmbeddedPoolKernel(_Samples, jupyter_kernel_test.KernelTests):
    """The protocol suite once more on the embedded default (the pool started by the test above, or now)."""

    kernel_name = "aca_test_local"
    # the first cell of this class may start the pool; jupyter_kernel_test waits 15 s per reply
    code_clear_output = "from IPython.display import clear_output; clear_output()"


def test_the_magic_in_a_stock_kernel_uses_the_local_pool_too(local_pool_dir):
    import os

    env = {**os.environ, "ACA_POOL_MANAGEMENT_ENDPOINT": "", "ACA_TOKEN": "", "ACA_PROGRESS_AFTER": "60",
           "ACA_LOCAL_POOL_DIR": str(local_pool_dir)}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        reply, _ = run(kc, "%load_ext aca_sessions")
        assert reply["status"] == "ok"
        reply, out = run(kc, "%%aca\nprint('remote')\n6 * 7", timeout=120)
        assert reply["status"] == "ok"
        assert out[0]["msg_type"] == "stream" and "running on the local session pool" in out[0]["content"]["text"]
        assert text(out) == "remote\n"
        assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["42"]
        _, out = run(kc, "%aca_session")
        assert "(local session pool)" in text(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
