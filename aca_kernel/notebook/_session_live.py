"""Live output and interrupts for the session runtime: a watcher thread beside the running cell.

Sent to the session with ``_session_runtime.py`` and installed next to it as ``<runtime module>_live``; it imports
nothing of the runtime (the runtime hands it the cell's Recorder). The service's execute call blocks until the
code ends, but its files API is a separate call, so while a cell runs this watcher:

* writes the cell's sealed records, a few times a second, to numbered chunk files in /mnt/data
  (``.aca-live-<id>-<n>.json``) that the client downloads one after the other (a missing one: nothing new yet);
* watches for ``.aca-live-<id>-stop``, the client's interrupt, and answers it by sending SIGINT to the main thread,
  where the cell runs, so ``time.sleep``, socket or file waits end with ``KeyboardInterrupt`` as in a local kernel.

The cell's code stays on the main thread (signals, thread-bound objects and parity hold). Quick cells write
nothing: the first chunk waits ``after`` seconds. A cell run *detached* (longer than the service's execution
limit) is started by one call and runs after it returns; its last chunk carries the whole envelope (``end``).
"""

import json
import os
import signal
import threading
import time

PREFIX = ".aca-live-"
FLUSH_EVERY = 0.25  # seconds between chunks while output keeps coming
STOP_CHECK = 0.1  # seconds between looks for the client's interrupt
HEARTBEAT = 5.0  # seconds between touches of a detached cell's "alive" file
RESIGNAL_AFTER = 0.5  # seconds after which a SIGINT that reached no handler is sent again (detached cells)
RESIGNALS = 5


class LiveCell:
    """The live side of one running cell: chunks out, interrupts in."""

    def __init__(self, recorder, cell_id, data_dir, after, detached=False):
        self.recorder = recorder
        self.cell_id = _file_id(cell_id)
        self.data_dir = data_dir
        self.after = float(after)
        self.detached = detached
        self.started = time.monotonic()
        self.flushed = 0  # records written so far
        self.chunks = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.main = threading.main_thread().ident
        self.signalled = None  # (when, _SIGINTS[0] then) of the last SIGINT sent to a detached cell
        self.resignals = 0
        self.last_flush = self.last_beat = 0.0

    def path(self, suffix):
        return os.path.join(self.data_dir, f"{PREFIX}{self.cell_id}-{suffix}")

    def start(self):
        _WATCHER.watch(self)
        return self

    def tick(self, now):
        """One look, from the watcher thread: the stop file, a chunk when due, the heartbeat."""
        self._check_stop()
        if self.signalled is not None:
            self._check_delivered(now)
        if now - self.started >= self.after and now - self.last_flush >= FLUSH_EVERY:
            self.last_flush = now
            self.flush()
        if self.detached and now - self.last_beat >= HEARTBEAT:
            self.last_beat = now
            self._beat()

    def _beat(self):
        # A detached cell has no execute call that would end if the kernel died: this file's changing
        # modification time tells the client that the cell's process is alive.
        try:
            with open(self.path("alive"), "w") as f:
                f.write(f"{time.time():.0f}\n")
        except OSError:
            pass

    def _check_stop(self):
        stop = self.path("stop")
        if os.path.exists(stop):
            try:
                os.remove(stop)
            except OSError:
                pass
            self._signal()

    def _signal(self):
        if self.detached:  # run_detached's handler counts what arrives
            self.signalled = (time.monotonic(), _SIGINTS[0])
        signal.pthread_kill(self.main, signal.SIGINT)

    def _check_delivered(self, now):
        # A SIGINT sent in the first moment of a detached cell was seen to reach no handler (about one start in
        # six here; the main thread slept on): send it again until the handler has run, a few times at most.
        when, count = self.signalled
        if _SIGINTS[0] != count:
            self.signalled = None
        elif now - when >= RESIGNAL_AFTER:
            if self.resignals >= RESIGNALS:
                self.signalled = None
                return
            self.resignals += 1
            self._signal()

    def flush(self, end=None):
        """Write the records sealed since the last chunk (and, for a detached cell, the envelope at its end)."""
        with self.lock:
            if self.done.is_set() and end is None:
                return
            upto = self.recorder.seal()
            if upto == self.flushed and end is None:
                return
            body = {"v": 2, "from": self.flushed, "records": self.recorder.outputs[self.flushed:upto]}
            if end is not None:
                body["end"] = end
            self.chunks += 1
            target = self.path(f"{self.chunks}.json")
            try:
                with open(target + ".tmp", "w") as f:
                    json.dump(body, f)
                os.replace(target + ".tmp", target)  # a reader sees a whole chunk or none
                self.flushed = upto
            except (OSError, TypeError, ValueError):
                self.chunks -= 1  # a full disk or a record JSON cannot carry: the envelope still has it all

    def finish(self, envelope=None):
        """The cell ended: stop watching; a detached cell leaves its envelope in a last chunk for the client."""
        with self.lock:  # a chunk being written by the watcher is complete before its files go
            self.done.set()
        _WATCHER.forget(self)
        if envelope is not None:
            self.flush(end=envelope)
        else:
            self.remove_files()

    def remove_files(self):
        """Delete this cell's live files (by name: listing /mnt/data would cost each cell the whole folder)."""
        for suffix in ("stop", "alive", *(f"{n}.json" for n in range(1, self.chunks + 1))):
            try:
                os.remove(self.path(suffix))
            except OSError:
                pass


class _Watcher:
    """One thread for the session's lifetime, looking after the running cell(s); started on first use.

    A thread per cell would cost every cell its start and join; this one sleeps while no cell runs.
    """

    def __init__(self):
        self.cells = []
        self.wake = threading.Condition()
        self.thread = None

    def watch(self, cell):
        with self.wake:
            self.cells.append(cell)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="aca-live", daemon=True)
                self.thread.start()
            self.wake.notify()

    def forget(self, cell):
        with self.wake:
            if cell in self.cells:
                self.cells.remove(cell)

    def _run(self):
        while True:
            with self.wake:
                while not self.cells:
                    self.wake.wait()
                cells = list(self.cells)
            now = time.monotonic()
            for cell in cells:
                if not cell.done.is_set():
                    try:
                        cell.tick(now)
                    except Exception:  # a full disk, a vanished folder: the envelope still carries everything
                        pass
            time.sleep(STOP_CHECK)


_WATCHER = _Watcher()


def _file_id(cell_id):
    """The cell's identifier as it appears in its file names (the client sends a hex id)."""
    return "".join(c for c in str(cell_id) if c.isalnum())[:32] or "cell"


def remove(data_dir, cell_id):
    """Delete a cell's live files, whatever their number (a detached cell's, once its client has read them)."""
    try:
        names = os.listdir(data_dir)
    except OSError:
        return
    prefix = f"{PREFIX}{_file_id(cell_id)}-"
    for name in names:
        if name.startswith(prefix):
            try:
                os.remove(os.path.join(data_dir, name))
            except OSError:
                pass


_SIGINTS = [0]  # SIGINTs that reached a detached cell's handler


def _on_sigint(signum, frame):
    _SIGINTS[0] += 1
    raise KeyboardInterrupt


def run_detached(loop, runner, *args):
    """Run ``runner(*args)`` on the kernel's own event loop once the current call has returned.

    The cell then runs on the main thread, outside any execute request, so the service's per-execution limit
    does not apply; SIGINT (the client's stop) raises KeyboardInterrupt in it as in a cell.
    """
    def go():
        previous = signal.signal(signal.SIGINT, _on_sigint)
        try:
            runner(*args)
        finally:
            signal.signal(signal.SIGINT, previous)

    loop.call_soon(go)
