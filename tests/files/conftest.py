"""Fixtures for the file widget and magic tests: clients on the shared local pool, one fresh session each."""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

V1 = "2024-02-02-preview"
V2 = "2025-10-02-preview"


def write_aca_kernelspec(jupyter_path: Path, pool, prefix: str) -> dict[str, str]:
    """The ACA Sessions kernelspec (``aca_sessions``) under ``jupyter_path/kernels``, on a fresh session of ``pool``.

    Point ``JUPYTER_PATH`` at ``jupyter_path`` to use it; returns the environment the kernel gets.
    """
    env = {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
           "ACA_SESSION_ID": f"{prefix}-{uuid.uuid4().hex[:12]}"}
    spec = jupyter_path / "kernels" / "aca_sessions"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "aca_kernel.kernel", "-f", "{connection_file}"],
        "display_name": "ACA Sessions (test)", "language": "python", "interrupt_mode": "message", "env": env}))
    return env


class GatedTransport(httpx.HTTPTransport):
    """A real HTTP transport that holds matching requests until ``release()``: a slow network on demand.

    Used only to keep a transfer in flight deterministically (double-click tests); the request still goes
    to the real local pool once released.
    """

    def __init__(self, match: Callable[[httpx.Request], bool]) -> None:
        super().__init__()
        self.match = match
        self.held: list[str] = []
        self._gate = threading.Event()
        self._arrived = threading.Condition()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.match(request):
            with self._arrived:
                self.held.append(f"{request.method} {request.url.path}")
                self._arrived.notify_all()
            self._gate.wait(60)
        return super().handle_request(request)

    def wait_held(self, count: int = 1, timeout: float = 30) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.held) >= count, timeout)

    def release(self) -> None:
        self._gate.set()


class FlattensFolders(httpx.HTTPTransport):
    """Fault injection: a 2024-02-02-preview service that drops the folders of an uploaded file's name.

    That version carries folders in the multipart file name and its handling of such names is undocumented; the
    local pool keeps them. This transport strips them from the upload's file name before the request goes on to
    the real local pool, which then stores (and reports) the file at the top of /mnt/data.
    """

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/files/upload"):
            body = re.sub(rb'filename="[^"]*/([^"/]*)"', rb'filename="\1"', request.read(), count=1)
            headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
            request = httpx.Request(request.method, request.url, headers=headers, content=body)
        return super().handle_request(request)


@pytest.fixture
def shell(pool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A real shell with ``%load_ext aca_sessions``, its context pointed at the pool, cwd in a temp folder."""
    monkeypatch.setenv("ACA_POOL_MANAGEMENT_ENDPOINT", pool.endpoint)
    monkeypatch.setenv("ACA_TOKEN", pool.token)
    monkeypatch.setenv("ACA_SESSION_ID", f"magic-{uuid.uuid4().hex[:12]}")
    monkeypatch.delenv("ACA_API_VERSION", raising=False)
    monkeypatch.chdir(tmp_path)
    ip = InteractiveShell.instance()
    if "aca_sessions" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "aca_sessions")
    ip._aca_context = None
    ip.run_line_magic("load_ext", "aca_sessions")
    yield ip
    ip.run_line_magic("unload_ext", "aca_sessions")


def client_of(ip, name: str | None = None):
    from aca_kernel.notebook._context import get_context

    return get_context(ip).client(name)


def reload_extension(ip, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """The extension again, with ``env`` set (e.g. ACA_API_VERSION): a fresh context and default session."""
    ip.run_line_magic("unload_ext", "aca_sessions")
    ip._aca_context = None
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ip.run_line_magic("load_ext", "aca_sessions")


@pytest.fixture
def make_client(pool) -> Iterator[Callable[..., object]]:
    """``make_client(api_version=V1, **kw)``: a SessionsClient on a fresh session of the shared pool."""
    from aca_kernel import SessionsClient

    clients: list[SessionsClient] = []

    def factory(api_version: str = V1, **kwargs: object) -> SessionsClient:
        kwargs.setdefault("session_id", f"files-{uuid.uuid4().hex[:12]}")
        client = SessionsClient(pool.endpoint, pool.token, api_version=api_version, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def browsers() -> Iterator[list]:
    """Collects FileBrowser instances so each is waited for and closed after the test."""
    made: list = []
    yield made
    for fb in made:
        fb.wait(30)
        fb.close()


class FakeBrowser:
    """The browser side of ``ChunkedUpload`` (its ES module), in Python: the same messages, the same window.

    Messages go in through ``_handle_custom_msg`` as ipywidgets delivers a front end's custom message, on the
    calling thread (the kernel's shell thread in real life); replies, sent from the shell thread or a worker,
    are recorded instead of going to a comm.
    """

    def __init__(self, widget) -> None:
        self.widget = widget
        self.replies: list[dict] = []
        self._cond = threading.Condition()
        widget.send = self._record  # the instance attribute shadows Widget.send

    def _record(self, content, buffers=None) -> None:
        with self._cond:
            self.replies.append(dict(content))
            self._cond.notify_all()

    def of(self, upload_id: str, *ops: str) -> list[dict]:
        with self._cond:
            return [r for r in self.replies if r.get("id") == upload_id and (not ops or r.get("op") in ops)]

    def wait_for(self, upload_id: str, *ops: str, count: int = 1, timeout: float = 60) -> dict:
        with self._cond:
            ok = self._cond.wait_for(lambda: len([r for r in self.replies if r.get("id") == upload_id
                                                  and r.get("op") in ops]) >= count, timeout)
        assert ok, f"no {ops} for {upload_id} in {timeout} s; replies: {self.of(upload_id)}"
        return self.of(upload_id, *ops)[count - 1]

    def send(self, content: dict, buffers: list | None = None) -> None:
        self.widget._handle_custom_msg(content, buffers or [])

    def begin(self, name: str, size: int) -> tuple[str, dict]:
        upload_id = uuid.uuid4().hex
        self.send({"op": "begin", "id": upload_id, "name": name, "size": size})
        return upload_id, self.wait_for(upload_id, "accepted", "rejected")

    def upload(self, name: str, data: bytes, *, cancel_after: int | None = None,
               before_chunk: Callable[[int], None] | None = None) -> dict:
        """Send ``data`` like the browser: chunks of ``chunk_bytes``, at most ``window`` unacknowledged.

        ``cancel_after=N`` sends a cancel instead of chunk N. Returns the final reply (done/failed/cancelled/rejected).
        """
        upload_id, first = self.begin(name, len(data))
        if first["op"] == "rejected":
            return first
        chunk, window = self.widget.chunk_bytes, self.widget.window
        view = memoryview(data)
        seq = offset = 0
        while offset < len(data):
            if cancel_after is not None and seq == cancel_after:
                self.send({"op": "cancel", "id": upload_id})
                break
            if seq >= window:  # wait for the ack of chunk seq - window, as the page does
                self.wait_for(upload_id, "ack", "failed", "cancelled", count=seq - window + 1)
                if self.of(upload_id, "failed", "cancelled"):
                    break
            if before_chunk is not None:
                before_chunk(seq)
            self.send({"op": "chunk", "id": upload_id, "seq": seq, "offset": offset},
                      [view[offset:offset + chunk]])
            seq, offset = seq + 1, offset + chunk
        return self.wait_for(upload_id, "done", "failed", "cancelled")
