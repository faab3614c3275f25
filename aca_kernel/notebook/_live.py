"""The client's side of live output: fetch a running cell's chunks, and send its interrupt (see ``_session_live``).

A :class:`LiveReader` belongs to one cell. The waiting thread calls :meth:`LiveReader.tick` a few times a second;
downloads run on the runner's worker threads, so the waiting thread stays free for SIGINT, and every new record
is handed, converted, to ``deliver`` on the waiting thread, in order, once. Whether the pool serves file calls
while a cell runs is not documented: a download still pending after ``STUCK_AFTER`` seconds means it does not
(it waits for the cell), and the session falls back to outputs at the end, saying so once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _runtime

if TYPE_CHECKING:
    from ._context import SessionState
    from ._runner import _Calls

__all__ = ["LiveReader"]

logger = logging.getLogger("aca_kernel.live")

POLL_AFTER = 1.0  # a cell that ends sooner costs no request beyond its execute
POLL_EVERY = 0.5
STUCK_AFTER = 5.0
QUICK = 1.5  # an answer this fast came while the cell ran
INTERRUPT_WAIT = 10.0  # for the stop file to be written, on a pool known to serve file calls while a cell runs
PROBE_WAIT = QUICK  # the same, while that is unknown: a pool that serves them answers at once
LATE_STOP_WAIT = 600.0  # how long a stop file that may land late is watched, to be removed after the cell
BEAT_CHECK = 10.0  # seconds between looks at a detached cell's alive file (the session touches it every 5 s)
DEAD_AFTER = 4  # that many looks at an unchanged file: the cell's process is gone


class LiveReader:
    """The live chunks of one running cell."""

    def __init__(self, calls: _Calls, state: SessionState, cell_id: str,
                 deliver: Callable[[dict[str, Any]], None], convert: Callable[[Any], dict[str, Any] | None],
                 *, poll_after: float = POLL_AFTER) -> None:
        self.calls, self.state, self.cell_id = calls, state, cell_id
        self.deliver, self.convert = deliver, convert
        self.poll_after = poll_after
        self.next_chunk = 1
        self.shown = 0  # records of the cell already delivered
        self.working: bool | None = None if state.live_ok is None else state.live_ok
        self.ended: str | None = None  # a detached cell's envelope, from its last chunk
        self.lost: str | None = None  # why a detached cell will never end (its kernel died)
        self._pending: tuple[Any, dict[str, Any], float] | None = None
        self._last = -math.inf
        self._detached = poll_after == 0.0
        self._beat: tuple[Any, dict[str, Any]] | None = None
        self._beat_at: float | None = None  # the first tick: the cell was started just before it
        self._beats: list[Any] = []  # the alive file's modification times, as the pool reports them

    def tick(self, elapsed: float) -> None:
        """Start, or take the result of, the next download; deliver what it brought."""
        now = time.monotonic()
        if self._detached:
            self._check_alive(now)
        if self._pending is not None:
            done, box, started = self._pending
            if not done.is_set():
                if now - started > STUCK_AFTER and self.working is not True:
                    self._give_up()
                return
            self._pending = None
            if self._take(box, quick=now - started < QUICK):
                self._fetch(now)  # more may be waiting
            return
        if self.working is not False and self.ended is None and elapsed >= self.poll_after \
                and now - self._last >= POLL_EVERY:
            self._fetch(now)

    def _fetch(self, now: float) -> None:
        client, name = self.state.client, _runtime.live_file(self.cell_id, f"{self.next_chunk}.json")
        done, box = self.calls.start(lambda: client.download_file(name))
        self._pending, self._last = (done, box, now), now

    def _take(self, box: dict[str, Any], *, quick: bool) -> bool:
        """Deliver a downloaded chunk; True when one came (the next may be there too)."""
        from .._exceptions import ResourceNotFoundError

        if "error" in box:
            if isinstance(box["error"], ResourceNotFoundError):
                if quick:  # nothing new yet, and the pool answered while the cell runs (a slow answer may have
                    self._works()  # waited for the cell's end: it proves nothing)
            else:
                logger.info("live output of %s: %s", self.cell_id, box["error"])
            return False
        self._works()
        chunk = _runtime.live_chunk(box["result"])
        if chunk is None:
            logger.info("live output of %s: chunk %d unreadable", self.cell_id, self.next_chunk)
            return False
        first, records, end = chunk
        self.next_chunk += 1
        for index, record in enumerate(records, first):
            if index != self.shown:
                continue  # seen already (or a gap, which the envelope at the end fills)
            item = self.convert(record)
            if item is not None:
                self.deliver(item)
            self.shown = index + 1
        if end is not None:
            self.ended = end
        return True

    def _check_alive(self, now: float) -> None:
        """A detached cell whose alive file stops changing lost its kernel (out of memory, killed)."""
        if self._beat_at is None:
            self._beat_at = now
        if self._beat is not None:
            done, box = self._beat
            if not done.is_set():
                return
            self._beat = None
            modified = getattr(box.get("result"), "last_modified", None)
            if modified is None and "error" in box:
                from .._exceptions import ResourceNotFoundError

                # The session writes the file as the cell starts, BEAT_CHECK s before the first look: missing, the
                # session went away (a fresh one answers under its name), even before the first look found it.
                if isinstance(box["error"], ResourceNotFoundError):
                    self.lost = "the session was deleted or recycled while the cell ran; its state is gone"
            if modified is not None:
                self._beats = [*self._beats[-(DEAD_AFTER - 1):], modified]
                if len(self._beats) >= DEAD_AFTER and len(set(self._beats)) == 1:
                    self.lost = ("the session's Python process stopped while the cell ran (it may have run out "
                                 "of memory); its variables and imports are gone")
        elif now - self._beat_at >= BEAT_CHECK and self.ended is None:
            self._beat_at = now
            client, name = self.state.client, _runtime.live_file(self.cell_id, "alive")
            self._beat = self.calls.start(lambda: client.get_file_properties(name))

    def _works(self) -> None:
        self.working = self.state.live_ok = True

    def _give_up(self) -> None:
        self.working = self.state.live_ok = False
        self._pending = None  # its thread finishes on its own; the envelope has everything

    def interrupt(self, cell_done: threading.Event | None = None) -> bool:
        """Ask the session to stop the cell (the stop file); False when that could not be written.

        ``cell_done`` is set when the cell's execute call has returned: a stop file still on its way is removed
        after both, so that none is left in /mnt/data.
        """
        if self.working is False:
            return False
        client, name = self.state.client, _runtime.live_file(self.cell_id, "stop")
        done, box = self.calls.start(lambda: client.upload_file(b"stop\n", name))
        if done.wait(INTERRUPT_WAIT if self.working else PROBE_WAIT) and "error" not in box:
            return True
        logger.info("could not send the interrupt of %s: %s", self.cell_id, box.get("error", "timed out"))
        if not done.is_set():
            if self.working is None:  # the pool holds file calls until the cell ends
                self._give_up()
            if cell_done is not None:
                self.calls.start(lambda: _remove_late(client, name, done, cell_done))
        return False


def _remove_late(client: Any, name: str, uploaded: threading.Event, cell_done: threading.Event) -> None:
    """Remove a stop file that landed after its cell ended (the session removes one that came in time)."""
    if not (uploaded.wait(LATE_STOP_WAIT) and cell_done.wait(LATE_STOP_WAIT)):
        return
    try:
        client.delete_file(name)
    except Exception as exc:  # already gone (the cell's end took it), or the session went away
        logger.debug("late stop file %s: %s", name, exc)
