"""The file browser inside a real ACA Sessions kernel: a transfer in flight does not freeze the message loop.

The kernel is started by jupyter_client from a kernelspec in a temporary JUPYTER_PATH; its cells are ``%%local``
so they run in the kernel itself, where the widget lives. The test then talks to the widget the way JupyterLab
does, with ``comm_msg`` messages on the shell channel. The widget's client uses a real HTTP transport to the
shared local pool that holds uploads until a later cell releases them, so an upload stays in flight for exactly
as long as the test needs: while it is held, another cell executes and another widget's click is handled, a
second click on the same upload starts nothing, and once released the progress bar's updates (sent from the
worker thread) reach IOPub.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import write_aca_kernelspec

CELL_SETUP = '''%%local
import json, os, threading
import httpx
from aca_kernel import SessionsClient
from aca_kernel.widgets import FileBrowser

arrived, gate, held = threading.Event(), threading.Event(), []

class HoldUploads(httpx.HTTPTransport):
    """The real transport; an upload waits for `gate`, so it stays in flight until a later cell says so."""
    def handle_request(self, request):
        if request.method == "POST" and request.url.path.endswith("/files/upload"):
            held.append(request.url.path)
            arrived.set()
            gate.wait(240)
        return super().handle_request(request)

client = SessionsClient(os.environ["ACA_POOL_MANAGEMENT_ENDPOINT"], os.environ["ACA_TOKEN"],
                        session_id=os.environ["ACA_SESSION_ID"], transport=HoldUploads())
fb = FileBrowser(client=client)
display(fb)
fb.wait(60)
print(json.dumps({"path": fb._uploads._local_text.model_id, "upload": fb._uploads._local_button.model_id,
                  "sort": fb._sort_buttons["size"].model_id}))
'''


class Kernel:
    """A jupyter_client connection that keeps every IOPub message it reads, whatever its parent."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.iopub: list[dict] = []

    def _until_idle(self, msg_id: str, timeout: float) -> list[dict]:
        own = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            self.iopub.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return own
            own.append(msg)

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute a cell; its stdout. A kernel whose loop is stuck never answers, and this raises queue.Empty."""
        return self.run_cell(code, timeout)[0]

    def run_cell(self, code: str, timeout: float = 60) -> tuple[str, list[dict]]:
        """Execute a cell; its stdout and its IOPub messages."""
        msg_id = self.kc.execute(code)
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        own = self._until_idle(msg_id, timeout)
        errors = [m["content"] for m in own if m["msg_type"] == "error"]
        assert reply["content"]["status"] == "ok", errors or reply["content"]
        return "".join(m["content"]["text"] for m in own if m["msg_type"] == "stream"
                       and m["content"]["name"] == "stdout"), own

    def comm(self, comm_id: str, data: dict, timeout: float = 60) -> list[dict]:
        """Send a comm message as Lab does; the IOPub messages it caused (once the kernel is idle again)."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return self._until_idle(msg["header"]["msg_id"], timeout)


@pytest.fixture
def kernel(pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    pytest.importorskip("aca_kernel.kernel.kernel", reason="the ACA Sessions kernel is not in this checkout")
    from jupyter_client.manager import start_new_kernel

    write_aca_kernelspec(tmp_path / "jupyter", pool, "loop")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    km, kc = start_new_kernel(kernel_name="aca_sessions", cwd=str(tmp_path))
    try:
        yield Kernel(kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def updates(messages: list[dict], comm_id: str) -> list[dict]:
    return [m["content"]["data"]["state"] for m in messages
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
            and m["content"]["data"].get("method") == "update"]


def test_transfer_in_flight_leaves_the_kernel_responsive(kernel: Kernel, tmp_path: Path) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(b"0123456789" * 10_000)
    ids = json.loads(kernel.run(CELL_SETUP).strip().splitlines()[-1])

    # The user types a path and clicks "Upload file" twice.
    kernel.comm(ids["path"], {"method": "update", "state": {"value": str(local)}, "buffer_paths": []})
    kernel.comm(ids["upload"], {"method": "custom", "content": {"event": "click"}})
    kernel.comm(ids["upload"], {"method": "custom", "content": {"event": "click"}})

    # Another cell runs while the upload is held inside its HTTP request.
    out = kernel.run("%%local\nprint(arrived.wait(60), len(held), fb.busy, '|', fb.status)")
    assert out.strip() == "True 1 ['upload:up.bin'] | up.bin is already uploading; wait for it to finish."

    # Another widget's click is handled meanwhile, and its update reaches the front end.
    caused = kernel.comm(ids["sort"], {"method": "custom", "content": {"event": "click"}})
    assert {"description": "Size ▲"} in updates(caused, ids["sort"])
    assert kernel.run("%%local\nprint(fb.sort_key, fb.busy)").strip() == "size ['upload:up.bin']"

    out = kernel.run("%%local\ngate.set()\nprint(fb.wait(60), len(held), [f.name for f in fb.files], '|', "
                     "fb.status)\nprint(json.dumps(fb.transfers.rows[-1].bar.model_id))")
    first, bar_id = out.strip().splitlines()
    assert first == "True 1 ['up.bin'] | Uploaded up.bin (97.7 KB) to /mnt/data/up.bin"
    # The worker thread's widget updates went out on IOPub: the bar turned green.
    assert {"bar_style": "success"} in updates(kernel.iopub, json.loads(bar_id))

    # The magic on the same session: in a widget front end its progress is a widget, and the browser sees it.
    out, messages = kernel.run_cell("%aca_upload up.bin copy.bin")
    assert "Uploaded up.bin (97.7 KB) to /mnt/data/copy.bin" in out
    assert any("application/vnd.jupyter.widget-view+json" in m["content"].get("data", {}) for m in messages
               if m["msg_type"] == "display_data")
    out = kernel.run("%%local\nfb.refresh()\nprint(fb.wait(60), [f.name for f in fb.files])")
    assert out.strip() == "True ['copy.bin', 'up.bin']"
