"""The session runtime's other requests: completion, inspection, and a front end's own requests.

A part of the session runtime: it runs in the same namespace as ``_session_runtime.py`` and the other parts (see
its docstring), never imported; the imports below only name, for readers and linters, what it uses of them.
"""

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._session_cells import (
        _arrive,
        cell,
    )
    from ._session_runtime import (
        REPLY_MARKER,
        _ip,
    )


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
