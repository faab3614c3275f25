"""Background work for the widgets: one worker thread per operation, at most one per key.

Widgets live in the kernel's message loop; a transfer run there would freeze every widget (and the kernel)
until it ends. Each operation runs in its own daemon thread instead and updates widget traits from there:
ipywidgets sends trait changes through the kernel's thread-safe IOPub socket. Keys make a second click on
the same operation a no-op while the first is still running.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["TaskRunner"]

logger = logging.getLogger("aca_kernel.widgets")


class TaskRunner:
    """Starts keyed operations in worker threads; ``wait()`` joins them (tests, scripts)."""

    def __init__(self, on_error: Callable[[str, BaseException], None],
                 on_success: Callable[[], None] | None = None) -> None:
        self._on_error = on_error
        self._on_success = on_success
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._idle = threading.Condition(self._lock)

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._running

    @property
    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def start(self, key: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` in a new thread unless ``key`` is already running; True when started."""
        with self._lock:
            if key in self._running:
                logger.debug("ignoring %s: already running", key)
                return False
            thread = threading.Thread(target=self._run, args=(key, fn, args), name=f"aca-widget:{key}",
                                      daemon=True)
            self._running[key] = thread
        thread.start()
        return True

    def guard(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` for a widget event, with any exception it raises shown in the widget.

        ipywidgets would print the traceback into whichever output the event's message belongs to (often
        none visible) and the user would see nothing; the status line shows it instead.
        """

        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except Exception as exc:
                logger.debug("%s failed", getattr(handler, "__name__", handler), exc_info=True)
                self._on_error(getattr(handler, "__name__", "handler"), exc)
                return None

        return run

    def _run(self, key: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
            if self._on_success is not None:
                self._on_success()
        except BaseException as exc:  # a worker must never die silently: the widget shows it
            logger.debug("%s failed", key, exc_info=True)
            try:
                self._on_error(key, exc)
            except Exception:  # pragma: no cover - the error display itself failed
                logger.exception("could not report the failure of %s", key)
        finally:
            with self._lock:
                self._running.pop(key, None)
                self._idle.notify_all()

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until no operation is running (including ones started meanwhile); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._running, timeout)
