"""The session runtime: installed once in a remote session, it runs each notebook cell there like a local kernel.

These files are never imported by the client. Their sources are sent to the session once (``_runtime``) and run
there, in this order, in one module's namespace, ``sys.modules[MODULE]``: this file (state, the Recorder),
``_session_routes.py`` (IPython's objects routed into the Recorder, ``install``), ``_session_cells.py`` (a cell's
run and its envelope), ``_session_comms.py`` (widgets) and ``_session_requests.py`` (completion, inspection, a front
end's own requests). ``_session_live.py`` is a module of its own beside it. Each cell is a short call,
``cell(code, count, options)``,
whose value is the *envelope*: ``MARKER`` + JSON of everything the cell produced, in order. The value travels
as the service's ``result``, which no stream limit cuts. A missing module tells the client that the session is
new or was recycled.

The session's own IPython runs the cell (``run_cell(store_history=True)`` with the notebook's prompt number), so
magics, history (``In``, ``Out``, ``_i``, ``_n``), ``Cell In[n]`` in tracebacks, payloads (pager,
``set_next_input``, ``exit``) and every matplotlib backend behave as in a local kernel. Outputs are recorded by
routing IPython's own objects, patched once: ``sys.stdout``/``sys.stderr`` (the same objects for good, so a
``logging`` handler or a saved ``sys.stdout`` from an earlier cell still writes into the current one), the display
publisher, the displayhook and ``_showtraceback``. Between cells, and for code that is not a cell call, they behave
exactly as before.

The service runs the call itself as a cell of that IPython, so the call would show up in ``In``, ``Out``, ``_``,
the line cache and the history's output store; ``_forget_call`` and the displayhook patches take it back out, so
the session keeps nothing per cell beyond what the user's own code keeps.

Constraints: Python 3.8+ and IPython 8+ (the service image); no imports from aca_kernel; never raise for anything
the user's code does; the entry points (``install``, ``cell``, ``acell``, ``start``, ``forget_live``,
``complete``, ``inspect_object``, ``comm_deliver``, ``housekeeping``), the envelope fields and the record kinds are
the contract with ``_runtime.py``.
"""

import base64
import json
import os

MARKER = "@@ACA-RICH/2@@"
REPLY_MARKER = "@@ACA-REPLY/2@@"
# The client puts this in every call's source; a history entry that holds it is a call, not a user's cell.
CALL_TAG = "_aca_runtime_"
# What the service's kernel shows for a value whose MIME bundle we do not forward (the local pool's value typing)
_INTERNAL_MIME = "application/vnd.aca."

_current = None  # the Recorder of the cell now running, or None between cells
_pending = None  # the envelope being returned: the displayhook must show it but not remember it
_install_info = None  # said once, in the first envelope after install
_ip = None
_STREAMS = {}  # name -> the stream object routed at install
_large = False  # the last envelope was large: the next call first returns freed memory to the system
_LARGE = 1 << 20
_libc = None


def _data_dir():
    for d in ("/mnt/data", os.environ.get("ACA_DATA_DIR") or ""):
        if d and os.path.isdir(d) and os.access(d, os.W_OK):
            return d
    return os.getcwd()


def _clean(obj):
    """A JSON-safe copy of a MIME bundle or metadata (bytes as base64, as in Jupyter messages)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _public(data):
    """A MIME bundle without the service's own value typing (not part of what a notebook shows)."""
    return {k: v for k, v in data.items() if not str(k).startswith(_INTERNAL_MIME)}


class Recorder:
    """The outputs of one cell, in order, within a byte budget.

    Every record goes through ``add`` (thread-safe: a cell's threads print too). Records before ``sealed`` are
    final: they may already have been sent while the cell runs, so later text starts a new record instead of
    growing one of them. A record's index in ``outputs`` is its sequence number.
    """

    def __init__(self, budget):
        import threading

        self.outputs = []
        self.budget = budget
        self.truncated = False
        self.sealed = 0
        self.lock = threading.Lock()

    def _room(self, n):
        if n <= self.budget:
            self.budget -= n
            return True
        self.truncated = True
        return False

    def add(self, item, size):
        """Append one record (an nbformat output, or another kind a client knows) costing ``size`` bytes."""
        with self.lock:
            if self._room(size):
                self.outputs.append(item)
                return True
            return False

    def seal(self):
        """The records so far, final from now on (for sending while the cell runs)."""
        with self.lock:
            self.sealed = len(self.outputs)
            return self.sealed

    def stream(self, name, text):
        if not isinstance(text, str):
            text = str(text)
        if not text:
            return
        with self.lock:
            if not self._room(len(text)):
                text = text[: max(self.budget, 0)]
                self.budget = 0
                if not text:
                    return
            last = self.outputs[-1] if len(self.outputs) > self.sealed else None
            if last is not None and last["output_type"] == "stream" and last["name"] == name:
                last["text"] += text
            else:
                self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def bundle(self, kind, data, metadata, transient=None, count=None):
        data = _public(data or {})
        if not data:
            return
        data, metadata = _clean(data), _clean(metadata or {})
        item = {"output_type": kind, "data": data, "metadata": metadata}
        if transient:
            item["transient"] = _clean(transient)
        if count is not None:
            item["execution_count"] = count
        if not self.add(item, len(json.dumps(data))):
            item["data"] = {"text/plain": f"[output of {kind} omitted: over the output limit]"}
            item["metadata"] = {}
            with self.lock:
                self.outputs.append(item)

    def error(self, ename, evalue, traceback):
        tb = [str(line) for line in traceback or []]
        item = {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": tb}
        if not self.add(item, sum(len(line) for line in tb)):
            item["traceback"] = tb[-3:]
            with self.lock:
                self.outputs.append(item)

    def clear(self, wait):
        self.add({"output_type": "clear_output", "wait": bool(wait)}, 0)
