"""The session runtime's comms: widgets' messages recorded with a cell's outputs, and the front end's messages delivered.

A part of the session runtime: it runs in the same namespace as ``_session_runtime.py`` and the other parts (see
its docstring), never imported; the imports below only name, for readers and linters, what it uses of them.
"""

import base64
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._session_cells import (
        _begin,
        _end,
    )
    from ._session_runtime import (
        MARKER,
        _clean,
        _current,
        _ip,
    )


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
    data = _clean({} if data is None else data)  # any JSON, as ipykernel sends it (not only widget state)
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
    if (msg_type == "comm_msg" and not item["buffers"] and isinstance(data, dict)
            and data.get("method") == "update"):
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
