"""Progress rows for transfers: one IntProgress per file, updated from the worker thread that moves it."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ipywidgets as w

from ._format import error_message, human_size

__all__ = ["TransferList", "TransferRow"]


class TransferRow(w.HBox):
    """``label [=====    ] 1.2 MB / 3.0 MB``; callable as the client's ``progress(done, total)``."""

    def __init__(self, label: str, total: int | None) -> None:
        self.total = total
        self.done = 0
        self.finished = False
        self._percent = -1
        self._label = w.HTML(html.escape(label), layout=w.Layout(width="18em", overflow="hidden"))
        self._bar = w.IntProgress(value=0, min=0, max=100, layout=w.Layout(width="14em"))
        self._info = w.HTML("waiting", layout=w.Layout(width="auto"))
        super().__init__([self._label, self._bar, self._info], layout=w.Layout(align_items="center"))

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.done = done
        # Send one widget update per percent, not one per chunk: every update is a message to the browser.
        percent = int(100 * done / self.total) if self.total else 0
        if percent != self._percent:
            self._percent = percent
            self._bar.value = min(percent, 100)
            of = f" / {human_size(self.total)}" if self.total else ""
            self._info.value = f"{human_size(done)}{of}"

    def succeed(self, text: str = "done") -> None:
        self.finished = True
        self._bar.value = 100
        self._bar.bar_style = "success"
        self._info.value = html.escape(text)

    def fail(self, text: str) -> None:
        self.finished = True
        self._bar.bar_style = "danger"
        self._info.value = f"<span style='color:var(--jp-error-color1,#c62828)'>{html.escape(text)}</span>"

    @property
    def bar(self) -> w.IntProgress:
        return self._bar

    def close(self) -> None:
        for child in (self._label, self._bar, self._info):
            child.close()
        super().close()


class TransferList(w.VBox):
    """The recent transfers; finished rows beyond ``keep`` are dropped, oldest first."""

    def __init__(self, keep: int = 6) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        super().__init__([])

    def add(self, label: str, total: int | None) -> TransferRow:
        row = TransferRow(label, total)
        with self._lock:
            rows = [*self.children, row]
            while len(rows) > self.keep:
                old = next((r for r in rows if getattr(r, "finished", False)), None)
                if old is None:
                    break
                rows.remove(old)
                old.close()
            self.children = tuple(rows)
        return row

    @contextmanager
    def track(self, label: str, total: int | None, done: str = "done") -> Iterator[TransferRow]:
        """A new row for one transfer: green with ``done`` when the block ends, red with the reason if it raises."""
        row = self.add(label, total)
        try:
            yield row
        except Exception as exc:
            row.fail(error_message(exc))
            raise
        row.succeed(done)

    @property
    def rows(self) -> list[TransferRow]:
        return [r for r in self.children if isinstance(r, TransferRow)]
