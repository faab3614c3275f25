"""The session runtime's cells: one cell's run under the notebook's prompt number, and its envelope.

A part of the session runtime: it runs in the same namespace as ``_session_runtime.py`` and the other parts (see
its docstring), never imported; the imports below only name, for readers and linters, what it uses of them.
"""

import base64
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._session_requests import (
        _reply,
    )
    from ._session_runtime import (
        _LARGE,
        _STREAMS,
        CALL_TAG,
        MARKER,
        Recorder,
        _clean,
        _data_dir,
        _install_info,
        _ip,
        _large,
        _libc,
        _public,
    )


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

        kept = getattr(linecache, "_ipython_cache", None)
        if kept:  # IPython caches cells in the order they ran: the call's is the newest
            name = next(reversed(kept))
        else:  # older IPython: name it as the compiler does (ipykernel hashes the source, in Python)
            name = ip.compile.get_code_name(raw, parsed, count)
        entry = linecache.cache.get(name)
        if entry is not None and "".join(entry[2]).rstrip("\n") == parsed:
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
        module.remove(_data_dir(), cell_id)
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
