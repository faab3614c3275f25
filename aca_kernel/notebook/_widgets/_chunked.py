"""Browser uploads in acknowledged chunks: any size up to the service's 128 MB, under a plain Jupyter server.

ipywidgets' ``FileUpload`` sends a whole file in one websocket message; Jupyter Server refuses messages over
10 MiB by default, the connection drops and the widget stops answering. This widget (an anywidget: a small ES
module, no server extension) slices each file in the browser and sends ``chunk_bytes`` at a time as binary
buffers of custom comm messages. The kernel hands each chunk to the HTTP upload as it arrives and acknowledges it
once sent on, and the browser keeps at most ``window`` unacknowledged chunks per file: kernel memory stays at
``window * chunk_bytes`` per upload whatever the file size.

The protocol (custom messages; every kernel reply carries the upload's ``id``):

```
browser -> kernel   {op: "begin", id, name, size}      name: the file's name, or its path inside a picked folder
kernel  -> browser  {op: "accepted", id} | {op: "rejected", id, error}
browser -> kernel   {op: "chunk", id, seq, offset} + one binary buffer
kernel  -> browser  {op: "ack", id, seq, sent}         sent: bytes handed to the service so far
browser -> kernel   {op: "cancel", id}
kernel  -> browser  {op: "done", id, path, size} | {op: "failed", id, error} | {op: "cancelled", id}
```

Comm messages from the browser are handled on the kernel's shell thread, so while a cell runs none arrive;
``kernel_busy`` (set around every execution: IPython's execute events, and ``busy()`` around the ACA Sessions
kernel's remote cells, which do not fire them) lets the browser say so instead of looking stuck.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from ..._validation import MAX_UPLOAD_BYTES

__all__ = ["ChunkStream", "ChunkedUpload", "Incoming", "UploadCancelled"]

logger = logging.getLogger("aca_kernel.widgets")

#: seconds without a chunk (while no cell runs) after which an upload is given up: the page was closed
STALL_SECONDS = 300.0


class UploadCancelled(Exception):
    """Raised inside the HTTP body when the user cancels: the request is abandoned, the service keeps nothing."""


class UploadStalled(Exception):
    pass


class Incoming:
    """One file arriving from the browser: a bounded queue of chunks and the stream the client reads."""

    def __init__(self, widget: ChunkedUpload, upload_id: str, name: str, size: int) -> None:
        self.widget, self.id, self.name, self.size = widget, upload_id, name, size
        self.cancelled = threading.Event()
        self.finished = False
        self._chunks: queue.Queue[tuple[int, memoryview]] = queue.Queue()
        self._expected_offset = 0
        self._last_chunk = time.monotonic()
        self.stream = ChunkStream(self)

    # shell thread -------------------------------------------------------------------------------------
    def feed(self, seq: int, offset: int, data: memoryview) -> str | None:
        """Queue one chunk; an error text when it does not follow the previous one."""
        if offset != self._expected_offset or offset + len(data) > self.size:
            return f"chunk {seq} at byte {offset} does not follow byte {self._expected_offset}"
        self._expected_offset += len(data)
        self._last_chunk = time.monotonic()
        self._chunks.put((seq, data))
        return None

    def cancel(self) -> None:
        self.cancelled.set()

    # worker thread ------------------------------------------------------------------------------------
    def next_chunk(self) -> tuple[int, memoryview]:
        while True:
            if self.cancelled.is_set():
                raise UploadCancelled(f"{self.name}: upload cancelled")
            try:
                return self._chunks.get(timeout=0.25)
            except queue.Empty:
                if self.widget.kernel_busy:
                    self._last_chunk = time.monotonic()  # the browser cannot send while a cell runs
                elif time.monotonic() - self._last_chunk > STALL_SECONDS:
                    raise UploadStalled(f"{self.name}: the browser sent nothing for {STALL_SECONDS:.0f} s "
                                        "(page closed or reloaded?); upload it again") from None

    def acknowledge(self, seq: int, sent: int) -> None:
        self.widget.reply("ack", self.id, seq=seq, sent=sent)


class ChunkStream(io.RawIOBase):
    """The file object the client uploads from: bytes come from the browser's chunks as they arrive.

    It reports its size through ``seek``/``tell`` (so the request has a Content-Length) but can only be read
    forward, once. Each chunk is acknowledged when fully read, which lets the browser send the next.
    """

    def __init__(self, incoming: Incoming) -> None:
        super().__init__()
        self._in = incoming
        self._pos = 0  # bytes read so far
        self._where = 0  # the position seek/tell talk about
        self._chunk: memoryview | None = None
        self._seq = -1
        self._offset = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._where

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._where + offset, io.SEEK_END: self._in.size + offset}[whence]
        if target != self._pos and target != self._in.size:
            raise io.UnsupportedOperation("a browser upload can only be read forward once")
        self._where = target
        return target

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if self._where != self._pos:
            raise io.UnsupportedOperation("a browser upload can only be read forward once")
        if self._pos >= self._in.size:
            return b""
        if self._chunk is None or self._offset >= len(self._chunk):
            self._seq, self._chunk = self._in.next_chunk()
            self._offset = 0
        end = len(self._chunk) if size is None or size < 0 else min(len(self._chunk), self._offset + size)
        data = bytes(self._chunk[self._offset:end])
        self._offset = end
        self._pos += len(data)
        self._where = self._pos
        if self._offset >= len(self._chunk):
            self._chunk = None  # release the chunk before asking for the next one
            self._in.acknowledge(self._seq, self._pos)
        return data


_live: weakref.WeakSet[ChunkedUpload] = weakref.WeakSet()


def _set_busy(value: bool) -> None:
    for widget in list(_live):
        try:
            widget.kernel_busy = value
        except Exception:  # a closed widget: nothing to tell
            logger.debug("could not update kernel_busy", exc_info=True)


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """``kernel_busy`` on every upload widget for the block: a cell that IPython's execute events do not cover."""
    _set_busy(True)
    try:
        yield
    finally:
        _set_busy(False)


def _watch_executions() -> None:
    """Set ``kernel_busy`` on every upload widget around each execution of this kernel's shell."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_aca_upload_watch", False):
        return
    shell.events.register("pre_execute", lambda: _set_busy(True))
    shell.events.register("post_execute", lambda: _set_busy(False))
    shell._aca_upload_watch = True


class ChunkedUpload(anywidget.AnyWidget):
    """Buttons to pick files or a folder in the browser, one progress row per file with a cancel button.

    ``on_begin(incoming) -> str | None`` is called on the shell thread for each file: it starts the transfer
    (reading ``incoming.stream`` in a worker thread) and returns None, or returns why the file is refused.
    The worker reports the end with ``finish(incoming, path=...)``, ``fail(incoming, error)`` or
    ``finish_cancelled(incoming)``.
    """

    _esm = Path(__file__).with_name("_chunked.js")
    _css = Path(__file__).with_name("_chunked.css")

    max_bytes = t.Int(MAX_UPLOAD_BYTES).tag(sync=True)
    chunk_bytes = t.Int(1024 * 1024).tag(sync=True)
    window = t.Int(4).tag(sync=True)
    parallel = t.Int(3).tag(sync=True)
    destination = t.Unicode("/mnt/data").tag(sync=True)
    kernel_busy = t.Bool(False).tag(sync=True)

    def __init__(self, on_begin: Callable[[Incoming], str | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_begin = on_begin
        self._uploads: dict[str, Incoming] = {}
        self._lock = threading.Lock()
        self.on_msg(self._on_message)
        _live.add(self)
        _watch_executions()

    @property
    def active(self) -> list[Incoming]:
        with self._lock:
            return [u for u in self._uploads.values() if not u.finished]

    def reply(self, op: str, upload_id: str, **fields: Any) -> None:
        try:
            self.send({"op": op, "id": upload_id, **fields})
        except Exception:  # the comm is gone (widget closed): nothing to tell
            logger.debug("could not send %s", op, exc_info=True)

    # ---------------------------------------------------------------- from the browser (shell thread)
    def _on_message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("id"), str):
            return
        op, upload_id = content.get("op"), content["id"]
        try:
            if op == "begin":
                self._begin(upload_id, content)
            elif op == "chunk":
                self._chunk(upload_id, content, buffers)
            elif op == "cancel":
                incoming = self._uploads.get(upload_id)
                if incoming is not None:
                    incoming.cancel()
        except Exception as exc:  # never let a message break the widget
            logger.exception("upload message %s failed", op)
            self.reply("failed", upload_id, error=f"{type(exc).__name__}: {exc}")

    def _begin(self, upload_id: str, content: dict[str, Any]) -> None:
        name, size = str(content.get("name") or ""), content.get("size")
        if not name or not isinstance(size, int) or size < 0:
            self.reply("rejected", upload_id, error="malformed upload request")
            return
        if size > self.max_bytes:
            self.reply("rejected", upload_id, error=f"{name} is {size / 1048576:.1f} MB; the service accepts at "
                                                    f"most {self.max_bytes // 1048576} MB per file")
            return
        incoming = Incoming(self, upload_id, name, size)
        with self._lock:
            self._uploads[upload_id] = incoming
        error = self._on_begin(incoming)
        if error:
            incoming.finished = True
            self.reply("rejected", upload_id, error=error)
        else:
            self.reply("accepted", upload_id)

    def _chunk(self, upload_id: str, content: dict[str, Any], buffers: list[Any]) -> None:
        incoming = self._uploads.get(upload_id)
        if incoming is None or incoming.finished or incoming.cancelled.is_set() or not buffers:
            return  # late chunks of a cancelled or failed upload
        data = buffers[0] if isinstance(buffers[0], memoryview) else memoryview(bytes(buffers[0]))
        problem = incoming.feed(int(content.get("seq", -1)), int(content.get("offset", -1)), data.cast("B"))
        if problem:
            incoming.cancel()
            self.reply("failed", upload_id, error=problem)

    # ---------------------------------------------------------------- from the worker
    def finish(self, incoming: Incoming, **fields: Any) -> None:
        self._end(incoming)
        self.reply("done", incoming.id, **fields)

    def fail(self, incoming: Incoming, error: str) -> None:
        self._end(incoming)
        self.reply("failed", incoming.id, error=error)

    def finish_cancelled(self, incoming: Incoming) -> None:
        self._end(incoming)
        self.reply("cancelled", incoming.id)

    def _end(self, incoming: Incoming) -> None:
        incoming.finished = True
        with self._lock:
            self._uploads.pop(incoming.id, None)

    def close(self) -> None:
        for incoming in self.active:
            incoming.cancel()  # a worker waiting for chunks must not wait for a page that is gone
        _live.discard(self)
        super().close()
