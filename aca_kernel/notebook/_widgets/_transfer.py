"""Transfers shared by the widget and the magics: bounded reads for previews, downloads into a local folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["download_to_path", "read_head"]

Progress = Callable[[int, "int | None"], None]


class _Enough(Exception):
    """Raised by the sink to stop a download once the preview has its bytes."""


class _BoundedSink:
    """A write-only file object that keeps at most ``limit`` bytes, then aborts the stream.

    Aborting from ``write`` ends the HTTP response early, so a preview of a 100 MB file reads about
    ``limit`` bytes (plus one network chunk), and memory stays bounded by ``limit``.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.truncated = False

    def write(self, data: bytes) -> int:
        room = self.limit - len(self.buffer)
        self.buffer += data[: max(room, 0)]
        if len(data) > room:
            self.truncated = True
            raise _Enough
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass


def read_head(client: Any, name: str, path: str | None, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of a remote file and whether that is the whole file."""
    sink = _BoundedSink(limit)
    try:
        client.download_file(name, sink, path=path)
    except _Enough:
        pass
    except Exception as exc:
        # The client may wrap exceptions raised by the destination; the sink knows whether it stopped it.
        if not sink.truncated or not _caused_by_enough(exc):
            raise
    return bytes(sink.buffer), not sink.truncated


def _caused_by_enough(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, _Enough):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def download_to_path(client: Any, name: str, path: str | None, target: Path,
                     progress: Progress | None = None) -> int:
    """Stream a remote file to ``target`` (the client writes a ``.part`` file and renames it when complete)."""
    written = client.download_file(name, os.fspath(target), path=path, progress=progress)
    return int(written) if isinstance(written, int) else Path(target).stat().st_size
