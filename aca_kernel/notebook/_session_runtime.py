"""The session runtime: installed once in a remote session, it runs each notebook cell there like a local kernel.

This file is never imported by the client. Its source is sent to the session once (``_runtime.install_code``) and
lives there as the module ``sys.modules[MODULE]``; each cell is then a short call, ``cell(code, count, options)``,
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
the user's code does; the names ``cell``, ``acell``, ``complete``, ``inspect_object`` and ``comm_deliver``, the
envelope fields and the record kinds are the contract with ``_runtime.py``.
"""

import base64
import json
import os
import sys

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


# --- the patches, made once ------------------------------------------------------------------------------------

def _route_stream(stream, name):
    # The object stays the same (a saved reference keeps working, isinstance checks hold): only its class gains a
    # write that records while a cell runs. IPython 9 sets `write` on the instance around each cell and leaves a
    # bound method behind; _begin clears such leftovers so that this write is the one found.
    base = type(stream)

    def write(self, text, *args, **kwargs):
        rec = _current
        if rec is None:
            return base.write(self, text, *args, **kwargs)
        rec.stream(name, text)
        return len(text) if isinstance(text, str) else 0

    try:
        stream.__class__ = type(base.__name__, (base,), {"write": write, "__module__": base.__module__})
    except TypeError:  # a stream class that cannot be subclassed this way: fall back to the instance
        stream.write = write.__get__(stream)
    _STREAMS[name] = stream


def _route_display_pub(pub):
    publish, clear_output = pub.publish, pub.clear_output

    def routed_publish(data, metadata=None, *args, transient=None, update=False, **kwargs):
        rec = _current
        if rec is None:
            return publish(data, metadata, *args, transient=transient, update=update, **kwargs)
        rec.bundle("update_display_data" if update else "display_data", data, metadata, transient)

    def routed_clear(wait=False):
        rec = _current
        if rec is None:
            return clear_output(wait)
        rec.clear(wait)

    pub.publish, pub.clear_output = routed_publish, routed_clear


def _route_displayhook(ip):
    hook = ip.displayhook
    original = {name: getattr(hook, name) for name in (
        "quiet", "start_displayhook", "write_output_prompt", "write_format_data", "finish_displayhook",
        "update_user_ns", "fill_exec_result", "log_output")}
    box = {}

    def recording():
        return _current is not None and _pending is None

    def quiet():
        # the envelope is shown whatever the user's cell ended with (a `;` would hide it)
        return False if _pending is not None else original["quiet"]()

    def start_displayhook():
        if not recording():
            return original["start_displayhook"]()
        box.clear()

    def write_output_prompt():
        if not recording():
            return original["write_output_prompt"]()

    def write_format_data(format_dict, md_dict=None):
        if not recording():
            return original["write_format_data"](format_dict, md_dict)
        box["bundle"] = (format_dict, md_dict)

    def finish_displayhook():
        global _pending
        if not recording():
            if _pending is not None:
                _pending = None
            return original["finish_displayhook"]()
        if "bundle" in box:
            _current.bundle("execute_result", box["bundle"][0], box["bundle"][1], count=hook.prompt_count)
        box.clear()

    def update_user_ns(result):
        if _pending is None or result is not _pending:
            return original["update_user_ns"](result)

    def fill_exec_result(result):
        if _pending is None or result is not _pending:
            return original["fill_exec_result"](result)

    def log_output(format_dict):
        if _pending is None:
            return original["log_output"](format_dict)

    for name, func in (("quiet", quiet), ("start_displayhook", start_displayhook),
                       ("write_output_prompt", write_output_prompt), ("write_format_data", write_format_data),
                       ("finish_displayhook", finish_displayhook), ("update_user_ns", update_user_ns),
                       ("fill_exec_result", fill_exec_result), ("log_output", log_output)):
        setattr(hook, name, func)


def _route_tracebacks(ip):
    show = ip._showtraceback

    def showtraceback(etype, evalue, stb):
        rec = _current
        if rec is None:
            return show(etype, evalue, stb)
        ip._last_traceback = stb
        rec.error(getattr(etype, "__name__", str(etype)), str(evalue), stb)

    ip._showtraceback = showtraceback


def _route_exit(ip):
    ask_exit = ip.ask_exit

    def routed_ask_exit():
        # The service's kernel must not stop: the payload goes back to the notebook, which decides.
        if _current is None or getattr(ip, "payload_manager", None) is None:
            return ask_exit()
        ip.payload_manager.write_payload({"source": "ask_exit",
                                          "keepkernel": bool(getattr(ip, "keepkernel_on_exit", False))})

    ip.ask_exit = routed_ask_exit


def install():
    """Patch this session's IPython once; report the facts the client wants to know about the session."""
    global _ip, _install_info
    import platform

    marker_dir = os.path.join(_data_dir(), ".aca-sessions")
    marker = os.path.join(marker_dir, "runtime")
    files_kept = os.path.exists(marker)
    try:
        os.makedirs(marker_dir, exist_ok=True)
        with open(marker, "w") as f:
            f.write("the aca-sessions runtime ran in this session\n")
    except OSError:
        files_kept = None
    _install_info = {"python": platform.python_version(), "files_kept": files_kept}
    if _ip is not None or _STREAMS:
        return  # patched already (a second client, or one that lost track): patching twice would chain
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    ip = get_ipython() if get_ipython is not None else None
    if ip is None:
        _install_info["ipython"] = False
        return
    _ip = ip
    for name in ("stdout", "stderr"):
        _route_stream(getattr(sys, name), name)
    _route_display_pub(ip.display_pub)
    _route_displayhook(ip)
    _route_tracebacks(ip)
    if hasattr(ip, "ask_exit"):
        _route_exit(ip)
    _route_comms()


# --- one cell ---------------------------------------------------------------------------------------------------

def _forget_call(ip):
    """Take the service's own record of this call (its cell) out of the history, the line cache and ``_i*``."""
    hm = getattr(ip, "history_manager", None)
    if hm is None or not hm.input_hist_raw or CALL_TAG not in hm.input_hist_raw[-1]:
        return
    raw, parsed = hm.input_hist_raw.pop(), hm.input_hist_parsed.pop()
    with hm.db_input_cache_lock:
        if hm.db_input_cache and hm.db_input_cache[-1][2] == raw:
            hm.db_input_cache.pop()
    count = ip.execution_count
    for n in (count, count - 1):  # IPython 9 counts the call before running it, IPython 8 after
        if ip.user_ns.get(f"_i{n}") == raw:
            ip.user_ns.pop(f"_i{n}", None)
            break
    hm._i00, hm._i, hm._ii = hm._i, hm._ii, hm._iii
    ip.user_ns.update({"_i": hm._i, "_ii": hm._ii, "_iii": hm._iii})
    try:  # the call's source would stay in linecache for good
        import linecache

        for n in (count, count - 1):
            name = ip.compile.get_code_name(raw, parsed, n)
            linecache.cache.pop(name, None)
            getattr(linecache, "_ipython_cache", {}).pop(name, None)
            getattr(ip.compile, "_filename_map", {}).pop(name, None)
    except Exception:
        pass


def _align(ip, count, store):
    """Number the cell with the notebook's prompt number; a stored input lands at ``In[count]``."""
    ip.execution_count = count
    if not store:
        return
    hm = ip.history_manager
    for hist in (hm.input_hist_parsed, hm.input_hist_raw):
        if len(hist) > count:
            del hist[count:]
        while len(hist) < count:
            hist.append("")


def _release_memory():
    """Give freed heap back to the system after a large envelope (glibc keeps it otherwise)."""
    global _large, _libc
    _large = False
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except Exception:
        pass


def _arrive():
    """Every entry point starts here: take the service's record of this call back out, free a large envelope."""
    global _pending
    if _large:
        _release_memory()
    _pending = None
    _forget_call(_ip)


def _live():
    """The live-output module installed beside this one (``_session_live.py``), or None."""
    return sys.modules.get(__name__ + "_live")


def _begin(options, detached=False):
    """The cell starts: number it, route IPython's outputs into a new Recorder, start the live watcher."""
    global _current
    ip = _ip
    store = bool(options.get("store_history", True)) and not options.get("silent")
    _align(ip, int(options["count"]), store)
    colors = options.get("colors")
    if colors and getattr(ip, "colors", colors) != colors:
        try:  # tracebacks and the pager coloured as the notebook's own IPython colours them
            ip.colors = colors
        except Exception:
            pass
    rec = Recorder(int(options.get("max_bytes") or 5_000_000))
    ip._last_traceback = None  # the reply's traceback is this cell's, or none (a UsageError shows none)
    # IPython 9 wraps sys.stdout.write around each cell to keep its printed text; the service's cell (this call)
    # did so too. The user's cell does it for itself, so the call's wrapper is set aside while the cell runs.
    saved = {}
    for name, stream in _STREAMS.items():
        write = stream.__dict__.get("write")
        if write is not None and getattr(write, "__self__", None) is not stream:
            saved[name] = write  # a wrapper of the call's cell: back after the cell
        stream.__dict__.pop("write", None)
    state = {"saved_writes": saved, "displayhook": sys.displayhook, "live": None}
    live, module = options.get("live"), _live()
    if isinstance(live, dict) and module is not None:
        state["live"] = module.LiveCell(rec, live.get("id"), _data_dir(), live.get("after", 0.5),
                                        detached=detached).start()
    # the service may wrap the displayhook; the user's cell gets IPython's own
    sys.displayhook = ip.displayhook
    _current = rec
    return rec, state, store


def _end(rec, state):
    global _current
    _current = None
    for name, write in state["saved_writes"].items():
        _STREAMS[name].write = write
    sys.displayhook = state["displayhook"]
    live = state.get("live")
    if live is not None and not live.detached:
        live.finish()  # the envelope carries everything: the chunk files go


def _finish(ip, rec, result, options, store, returning=True):
    global _pending, _install_info, _large
    env = {"v": 2, "outputs": rec.outputs, "truncated": rec.truncated, "status": "ok", "error": None,
           "count": int(options.get("count") or 0)}
    if _install_info is not None:
        env["runtime"], _install_info = _install_info, None
    pm = getattr(ip, "payload_manager", None)
    if pm is not None:
        env["payload"] = _clean(pm.read_payload())
        pm.clear_payload()
    err = None if result is None else (result.error_before_exec or result.error_in_exec)
    if result is not None and not result.success:
        tb = getattr(ip, "_last_traceback", None) or []
        env["status"] = "error"
        env["error"] = {"ename": type(err).__name__ if err is not None else "Error",
                        "evalue": str(err) if err is not None else "", "traceback": [str(x) for x in tb]}
    exprs = options.get("user_expressions") or {}
    if exprs:
        env["user_expressions"] = {} if env["status"] != "ok" else {
            name: {**reply, "data": _public(reply["data"])} if isinstance(reply.get("data"), dict) else reply
            for name, reply in _clean(ip.user_expressions(exprs)).items()}
    if options.get("export") and env["status"] == "ok":
        env.update(_export(result.result if result is not None else None, str(options.get("tag") or "x")))
    envelope = MARKER + json.dumps(env)
    _large = len(envelope) > _LARGE
    if returning:  # the call's value: the displayhook shows it without keeping it
        _pending = envelope
    return envelope


def _export(value, tag):
    try:
        copy = json.loads(json.dumps(value, allow_nan=False))
        if copy == value:  # tuples, int keys, ... would come back changed: pickle those
            return {"value": copy}
    except (TypeError, ValueError):
        pass
    import pickle

    path = os.path.join(_data_dir(), f".aca-out-{tag}.pkl")
    try:
        with open(path, "wb") as f:
            pickle.dump(value, f, protocol=4)
        return {"value_file": os.path.basename(path)}
    except Exception as e:
        try:
            os.remove(path)
        except OSError:
            pass
        return {"value_error": f"{type(e).__name__}: {e}"}


def _options(code_b64, count, options):
    opts = dict(json.loads(options)) if isinstance(options, str) else dict(options or {})
    opts["count"] = count
    return base64.b64decode(code_b64).decode("utf-8"), opts


class _Cell:
    """One cell's run: outputs routed into its Recorder between ``with`` and its end (``_begin``/``_end``)."""

    def __init__(self, options, detached=False):
        self.options, self.detached = options, detached
        self.result = None

    def __enter__(self):
        self.rec, self.state, self.store = _begin(self.options, self.detached)
        return self

    def __exit__(self, *exc):
        _end(self.rec, self.state)

    def envelope(self, returning=True):
        return _finish(_ip, self.rec, self.result, self.options, self.store, returning)

    def run(self, code):
        self.result = _ip.run_cell(code, store_history=self.store, silent=bool(self.options.get("silent")))

    async def run_async(self, code):
        ip, silent = _ip, bool(self.options.get("silent"))
        try:
            cell_src, error = ip.transform_cell(code), None
        except Exception:
            cell_src, error = code, sys.exc_info()
        try:
            self.result = await ip.run_cell_async(code, store_history=self.store, silent=silent,
                                                  transformed_cell=cell_src, preprocessing_exc_tuple=error)
        finally:
            ip.events.trigger("post_execute")  # ipykernel does this around run_cell_async, as we must
            if not silent:
                ip.events.trigger("post_run_cell", self.result)

    def hand_over(self):
        """A detached cell ended: its envelope goes into its last live chunk, for the client to fetch."""
        if hasattr(self, "state"):  # it began
            self.state["live"].finish(self.envelope(returning=False))


def cell(code_b64, count, options):
    """Run one notebook cell; the value is the envelope."""
    _arrive()
    code, opts = _options(code_b64, count, options)
    if _ip is None:
        return _plain(code, opts)
    with _Cell(opts) as run:
        run.run(code)
    return run.envelope()


async def acell(code_b64, count, options):
    """``cell`` for code with top-level ``await``: the service's IPython awaits the call."""
    _arrive()
    code, opts = _options(code_b64, count, options)
    if _ip is None:
        return _plain(code, opts)
    with _Cell(opts) as run:
        await run.run_async(code)
    return run.envelope()


def start(code_b64, count, options):
    """Start a cell that may run longer than the service allows one execution: it runs once this call returns.

    Its outputs, and at its end its envelope, come through the live chunk files (``_session_live``).
    """
    _arrive()
    code, opts = _options(code_b64, count, options)
    module = _live()
    if _ip is None or module is None or not isinstance(opts.get("live"), dict):
        return _reply({"started": False, "reason": "this session cannot run cells detached (no IPython)"})
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _reply({"started": False, "reason": "the session's kernel runs no event loop"})
    cell = _Cell(opts, detached=True)

    def run():
        try:
            with cell:
                cell.run(code)
        finally:
            cell.hand_over()

    async def run_async():
        try:
            with cell:
                await cell.run_async(code)
        finally:
            cell.hand_over()

    if opts.get("awaited_cell"):
        loop.call_soon(lambda: loop.create_task(run_async()))
    else:
        module.run_detached(loop, run)
    return _reply({"started": True})


def forget_live(cell_id):
    """Delete the live files a detached cell left for its client (who has read them)."""
    _arrive()
    module = _live()
    if module is not None:
        module.remove(_data_dir(), "".join(c for c in str(cell_id) if c.isalnum())[:32])
    return _reply({"removed": True})


def _plain(code, opts):
    """No IPython in this session: run the code with exec and report the last expression's repr."""
    global _install_info
    import ast
    import io

    env = {"v": 2, "outputs": [], "truncated": False, "status": "ok", "error": None, "ipython": False,
           "count": int(opts.get("count") or 0)}
    if _install_info is not None:
        env["runtime"], _install_info = _install_info, None
    rec = Recorder(int(opts.get("max_bytes") or 5_000_000))
    env["outputs"] = rec.outputs
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        tree = ast.parse(code, "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        g = sys.modules["__main__"].__dict__
        exec(compile(tree, "<cell>", "exec"), g)
        value = eval(compile(last, "<cell>", "eval"), g) if last is not None else None
    except BaseException as e:
        import traceback

        value = None
        env["status"] = "error"
        env["error"] = {"ename": type(e).__name__, "evalue": str(e),
                        "traceback": traceback.format_exception(type(e), e, e.__traceback__)}
    finally:
        sys.stdout, sys.stderr = saved
    rec.stream("stdout", out.getvalue())
    rec.stream("stderr", err.getvalue())
    if value is not None:
        rec.bundle("execute_result", {"text/plain": repr(value)}, {}, count=env["count"])
    if env["error"] is not None:
        rec.error(env["error"]["ename"], env["error"]["evalue"], env["error"]["traceback"])
    return MARKER + json.dumps(env)


# --- comms (widgets) -------------------------------------------------------------------------------------------
# A comm's messages to the front end (ipywidgets' comm_open/comm_msg/comm_close, with their binary buffers) are
# recorded while a cell or a forwarded message runs, in order with the other outputs, as records whose
# ``output_type`` is the message type: "comm_open", "comm_msg", "comm_close" (never an nbformat output type).
# Record: {"output_type", "comm_id", "data", "metadata", "buffers": [base64, ...]} (+ "target_name",
# "target_module" for comm_open). An Output widget that captures (``with out:``) names the session's current
# request in its ``msg_id`` state; the record says PARENT instead, and the client puts its own request there.
# Messages from the front end come back through ``comm_deliver``, which runs the comm's handlers while recording.

COMM_KINDS = ("comm_open", "comm_msg", "comm_close")
PARENT = "@@ACA-PARENT@@"


def _parent_msg_id():
    ip = _ip
    for owner in (ip, getattr(ip, "kernel", None)):
        get = getattr(owner, "get_parent", None)
        if get is None:
            continue
        try:
            parent = get()
        except Exception:
            continue
        header = parent.get("header") if isinstance(parent, dict) else None
        if header and header.get("msg_id"):
            return header["msg_id"]
    return None


def _comm_data(data):
    data = _clean(data or {})
    state = data.get("state") if isinstance(data, dict) else None
    if isinstance(state, dict) and state.get("msg_id") and state["msg_id"] == _parent_msg_id():
        state["msg_id"] = PARENT
    return data


def _record_comm(rec, msg_type, comm_id, data, metadata, buffers, keys):
    data = _comm_data(data)
    item = {"output_type": msg_type, "comm_id": str(comm_id), "data": data, "metadata": _clean(metadata or {}),
            "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in buffers or ()]}
    if msg_type == "comm_open":
        item["target_name"] = str(keys.get("target_name") or "")
        if keys.get("target_module"):
            item["target_module"] = str(keys["target_module"])
    if msg_type == "comm_msg" and not item["buffers"] and data.get("method") == "update":
        with rec.lock:  # consecutive state updates of one comm (a loop, a progress bar) are one update
            last = rec.outputs[-1] if len(rec.outputs) > rec.sealed else None
            if (last is not None and last["output_type"] == "comm_msg" and last["comm_id"] == item["comm_id"]
                    and not last["buffers"] and last["data"].get("method") == "update"
                    and isinstance(last["data"].get("state"), dict) and isinstance(data.get("state"), dict)
                    and not last["data"].get("buffer_paths") and not data.get("buffer_paths")):
                size = len(json.dumps(data["state"]))
                if rec._room(size):
                    last["data"]["state"].update(data["state"])
                    return
    rec.add(item, len(json.dumps(item)))


def _route_comms():
    """Record what the session's comms send while a cell (or a forwarded message) runs; else send as before."""
    try:
        from ipykernel.comm import comm as kernel_comm
    except Exception:  # not an ipykernel session: its comms reach no front end anyway
        return
    for cls in (getattr(kernel_comm, "BaseComm", None), getattr(kernel_comm, "Comm", None)):
        # A runtime of another version in the same session patched it already: this wraps that one, which
        # passes on while its own module records nothing.
        if cls is None or "publish_msg" not in cls.__dict__:
            continue
        original = cls.__dict__["publish_msg"]

        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, _original=original, **keys):
            rec = _current
            if rec is None or msg_type not in COMM_KINDS:
                return _original(self, msg_type, data, metadata, buffers, **keys)
            if getattr(self, "kernel", None) is None and _ip is not None:
                # as the original does on its first message: ipywidgets sends only through a comm with a kernel
                self.kernel = getattr(_ip, "kernel", None)
            _record_comm(rec, msg_type, self.comm_id, data, metadata, buffers, keys)

        cls.publish_msg = publish_msg


def _comm_manager():
    manager = getattr(getattr(_ip, "kernel", None), "comm_manager", None)
    if manager is None:
        try:
            import comm

            manager = comm.get_comm_manager()
        except Exception:
            return None
    return manager


def comm_deliver(batch_b64, options):
    """Hand front-end messages to the session's comms (their handlers run here); the value is an envelope.

    ``batch``: [{"comm_id", "kind": "msg"|"close", "data", "metadata", "buffers": [base64]}, ...], in order.
    The envelope's ``unknown`` lists comm ids the session does not have (recycled, or closed here).
    """
    global _pending
    batch = json.loads(base64.b64decode(batch_b64).decode("utf-8"))
    opts = dict(json.loads(options)) if isinstance(options, str) else dict(options or {})
    env = {"v": 2, "outputs": [], "truncated": False, "status": "ok", "error": None, "count": 0, "unknown": []}
    ip = _ip
    manager = _comm_manager() if ip is not None else None
    if manager is None:
        env["unknown"] = [m.get("comm_id") for m in batch]
        _pending = MARKER + json.dumps(env)
        return _pending
    rec, state, _ = _begin({"count": ip.execution_count, "store_history": False,
                            "max_bytes": opts.get("max_bytes")})
    try:
        for m in batch:
            comm_id = str(m.get("comm_id"))
            target = getattr(manager, "comms", {}).get(comm_id)
            if target is None:
                env["unknown"].append(comm_id)
                continue
            header = dict((ip.kernel.get_parent() or {}).get("header") or {}) if hasattr(
                getattr(ip, "kernel", None), "get_parent") else {}
            msg = {"header": {**header, "msg_type": "comm_close" if m.get("kind") == "close" else "comm_msg"},
                   "parent_header": {}, "metadata": m.get("metadata") or {},
                   "content": {"comm_id": comm_id, "data": m.get("data") or {}},
                   "buffers": [memoryview(base64.b64decode(b)) for b in m.get("buffers") or ()]}
            msg["msg_type"] = msg["header"]["msg_type"]
            try:
                if m.get("kind") == "close":
                    manager.comms.pop(comm_id, None)
                    target._closed = True
                    target.handle_close(msg)
                else:
                    target.handle_msg(msg)
            except Exception:  # a failing handler shows its traceback, as ipywidgets' own callbacks do
                ip.showtraceback()
    finally:
        _end(rec, state)
    env["outputs"], env["truncated"] = rec.outputs, rec.truncated
    _pending = MARKER + json.dumps(env)
    return _pending


# --- completion and inspection ----------------------------------------------------------------------------------

def _reply(body):
    global _pending
    _pending = REPLY_MARKER + json.dumps(body, default=str)
    return _pending


def complete(code, pos):
    _arrive()
    ip = _ip
    if ip is None:
        return _reply({"matches": [], "cursor_start": pos, "cursor_end": pos, "metadata": {}})
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        comps = list(ip.Completer.completions(code, pos))
    if comps:
        start, end = comps[0].start, comps[0].end
        comps = [c for c in comps if c.start == start and c.end == end]
    else:
        start = end = pos
    return _reply({"matches": [c.text for c in comps], "cursor_start": start, "cursor_end": end,
                   "metadata": {"_jupyter_types_experimental": [
                       {"start": c.start, "end": c.end, "text": c.text, "type": c.type, "signature": c.signature}
                       for c in comps]}})


def inspect_object(name, level):
    _arrive()
    ip = _ip
    if ip is None:
        return _reply({"found": False, "data": {}})
    try:
        bundle = ip.object_inspect_mime(name, detail_level=level)
    except KeyError:
        return _reply({"found": False, "data": {}})
    if not getattr(ip, "enable_html_pager", False):
        bundle.pop("text/html", None)
    return _reply({"found": True, "data": bundle})


# --- a front end's own requests ----------------------------------------------------------------------------------

_setup_done = set()  # the front ends' set-up code already run in this process


def housekeeping(code_b64, count, options):
    """``cell`` for a front end's request, after its set-up (``options["setup"]``, each run once per process).

    Threads the request starts get up to ``options["threads"]`` seconds to finish: VS Code's variables view answers
    from a thread (a display it updates later), and waiting while the cell's outputs are still recorded brings that
    update back with the reply, as a local kernel sends it.
    """
    import contextlib
    import io
    import threading
    import time

    opts = json.loads(options) if isinstance(options, str) else dict(options or {})
    for source in opts.get("setup") or ():
        if source not in _setup_done:  # imports and definitions only (the client checked): nothing to show
            _setup_done.add(source)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    exec(compile(source, "<front-end set-up>", "exec"),
                         _ip.user_ns if _ip is not None else sys.modules["__main__"].__dict__)
            except Exception:
                pass
    wait = float(opts.get("threads") or 0)
    if _ip is None or wait <= 0:
        return cell(code_b64, count, options)
    before = set(threading.enumerate())

    def join_new_threads():
        deadline = time.monotonic() + wait
        for thread in threading.enumerate():
            if thread not in before and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    _ip.events.register("post_execute", join_new_threads)  # still inside the cell: its outputs are recorded
    try:
        return cell(code_b64, count, options)
    finally:
        _ip.events.unregister("post_execute", join_new_threads)
