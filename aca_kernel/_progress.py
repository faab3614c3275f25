"""A byte-progress reporter usable as the client's ``progress=`` callback: tqdm on a terminal, plain lines otherwise.

```python
with progress_bar(size, "upload data.csv") as bar:
    client.upload_file("data.csv", progress=bar)
```
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar", "format_bytes", "progress_bar"]


def format_bytes(n: float | None) -> str:
    """``1536 -> '1.5 KB'``; ``None`` (folders, unknown sizes) -> ``''``. Shared by the CLI, magics and widget."""
    if n is None:
        return ""
    value = float(n)
    unit = "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        # Compare what will be shown: 1048575 B is "1.0 MB", not "1024.0 KB".
        if (abs(value) < 1024 if unit == "B" else round(abs(value), 1) < 1024) or unit == "TB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


class ProgressBar:
    """Callable ``(done_bytes, total_bytes_or_None)``; ``done`` is cumulative, as the client reports it."""

    # Plain mode writes to logs/CI output: one line per quarter, not one per chunk.
    _PLAIN_STEP = 0.25
    _PLAIN_INTERVAL = 5.0  # seconds between lines when the total is unknown

    def __init__(self, total: int | None, desc: str, *, file: TextIO | None = None, tty: bool | None = None):
        self.total = total
        self.desc = desc
        self.done = 0
        self._file = file if file is not None else sys.stderr
        self._closed = False
        self._next_fraction = self._PLAIN_STEP
        self._last_line = time.monotonic()
        is_tty = tty if tty is not None else bool(getattr(self._file, "isatty", lambda: False)())
        self._tqdm = None
        if is_tty:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                              file=self._file, leave=True, dynamic_ncols=True)

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._closed:
            return
        if total is not None and total != self.total:
            self.total = total
            if self._tqdm is not None:
                self._tqdm.total = total
                self._tqdm.refresh()
        step = max(0, done - self.done)
        self.done = max(self.done, done)
        if self._tqdm is not None:
            self._tqdm.update(step)
            return
        if self.total:
            fraction = self.done / self.total
            if fraction >= self._next_fraction and fraction < 1:
                self._line()
                while self._next_fraction <= fraction:
                    self._next_fraction += self._PLAIN_STEP
        elif time.monotonic() - self._last_line >= self._PLAIN_INTERVAL:
            self._line()

    def _line(self) -> None:
        self._last_line = time.monotonic()
        if self.total:
            pct = 100 * self.done / self.total
            text = f"{self.desc}: {format_bytes(self.done)} / {format_bytes(self.total)} ({pct:.0f}%)"
        else:
            text = f"{self.desc}: {format_bytes(self.done)}"
        print(text, file=self._file, flush=True)

    def close(self, ok: bool = True) -> None:
        """Finish the bar; plain mode prints a final line unless ``ok`` is False (the transfer failed)."""
        if self._closed:
            return
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        elif ok:
            self._line()

    def succeed(self, message: str = "") -> None:
        self.close(ok=True)

    def fail(self, message: str = "") -> None:
        self.close(ok=False)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(ok=exc_type is None)  # a failed transfer ends without a final "done" line


def progress_bar(total: int | None, desc: str, *, file: TextIO | None = None, tty: bool | None = None) -> ProgressBar:
    """A progress callback for ``total`` bytes (None if unknown); tqdm when ``file`` (stderr) is a terminal."""
    return ProgressBar(total, desc, file=file, tty=tty)
