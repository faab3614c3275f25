"""The session runtime's routes: IPython's own objects, patched once, record into the running cell.

A part of the session runtime: it runs in the same namespace as ``_session_runtime.py`` and the other parts (see
its docstring), never imported; the imports below only name, for readers and linters, what it uses of them.
"""

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._session_comms import (
        _route_comms,
    )
    from ._session_runtime import (
        _STREAMS,
        _current,
        _data_dir,
        _ip,
        _pending,
    )


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
