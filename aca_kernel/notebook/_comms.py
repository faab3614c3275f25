"""Widgets made in the session, shown and working in the notebook: the session's comms mirrored as local comms.

The session runtime records what the session's comms send (``comm_open``, ``comm_msg``, ``comm_close``, with
buffers) in order with the other outputs. Here each remote comm gets a local twin in this kernel's comm manager,
under a fresh identifier, so that several sessions and the kernel's own widgets never collide:

* :meth:`CommBridge.record` takes one record (in order, at the end of a cell or as live output arrives) and
  returns it in local identifiers, ready to send; ``IPY_MODEL_<id>`` references inside widget state and the
  ``model_id`` of widget views (:meth:`CommBridge.show`) are mapped the same way.
* :func:`emit` sends a message on the kernel's iopub channel with an explicit parent; it is how both the kernel
  and ``%%aca`` send comm records, and how a forwarded message's results are shown.
* A message from the front end to a twin (a slider moved, a button clicked) goes to the session in one request
  (``RemoteRunner.forward``); the comm's handlers run there and what they produce (state echoes, outputs into
  an ``Output`` widget, new displays) is sent back with the front end's message as parent. The handler holds
  the kernel's reply until then, so the front end's own widget throttle (one message in flight per widget until
  the kernel is idle, later states merged) debounces a dragged slider; messages that arrive meanwhile from other
  threads (comm subshells) wait and go together in the next request, the latest state of each widget winning.
* A widget whose session was recycled (or replaced with ``%aca_new_session``) says so when touched: the
  displays that show the session's widgets are replaced by a notice.
* A reloaded page asks the kernel for every widget's state: when ipywidgets answers (it is imported here), the
  mirrored widgets' last known states are added to its answer; otherwise the front end asks each comm, and the
  request is forwarded like any message.
"""

from __future__ import annotations

import base64
import logging
import sys
import threading
import uuid
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from ._runtime import COMM_KINDS, PARENT

if TYPE_CHECKING:
    from ._context import SessionState
    from ._runner import RemoteRunner, RunOutcome

__all__ = ["BRIDGE", "COMM_KINDS", "WIDGET_VIEW", "CommBridge", "emit", "kernel"]

logger = logging.getLogger("aca_kernel.comms")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_REF = "IPY_MODEL_"


def kernel() -> Any | None:
    """The ipykernel kernel of this process (the ACA kernel, or the stock kernel running ``%%aca``), or None."""
    mod = sys.modules.get("ipykernel.kernelbase")
    if mod is None or not mod.Kernel.initialized():
        return None
    return mod.Kernel.instance()


def emit(kern: Any, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None = None) -> None:
    """Send one iopub message (a comm record of ``RunOutcome.outputs`` included) with ``parent`` as its parent.

    A comm record's ``metadata`` and base64 ``buffers`` become the message's metadata and binary frames; an Output
    widget's ``msg_id`` placeholder becomes the parent's id, so the front end routes what follows into it.
    """
    content = dict(content)
    metadata: dict[str, Any] = {}
    buffers: list[bytes] | None = None
    if parent is None:
        parent = kern.get_parent()
    if msg_type in COMM_KINDS:
        metadata = content.pop("metadata", None) or {}
        buffers = [base64.b64decode(b) for b in content.pop("buffers", None) or ()]
        data = content.get("data")
        state = data.get("state") if isinstance(data, dict) else None
        if isinstance(state, dict) and state.get("msg_id") == PARENT:
            content["data"] = {**content["data"], "state": {**state, "msg_id": (parent.get("header") or {}).get(
                "msg_id", "")}}
        ident = f"comm-{content.get('comm_id')}".encode()
    else:
        topic = getattr(kern, "_topic", None)
        ident = topic(msg_type) if topic is not None else None
    kern.session.send(kern.iopub_socket, msg_type, content, parent=parent, metadata=metadata, ident=ident,
                      buffers=buffers)


def _map_refs(value: Any, table: dict[str, str]) -> Any:
    """``value`` with every ``IPY_MODEL_<id>`` whose id is in ``table`` renamed (widget state is JSON)."""
    if isinstance(value, str):
        if value.startswith(_REF) and value[len(_REF):] in table:
            return _REF + table[value[len(_REF):]]
        return value
    if isinstance(value, dict):
        return {k: _map_refs(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_refs(v, table) for v in value]
    return value


def _comm_class() -> type:
    from comm.base_comm import BaseComm

    class LocalComm(BaseComm):
        """The local twin of a session's comm: it receives the front end's messages; it never sends itself."""

        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                        **keys: Any) -> None:
            pass  # the session's own messages are sent (with emit) as their records arrive

    return LocalComm


@dataclass(eq=False)
class _Link:
    local_id: str
    remote_id: str
    session: _Session
    runner: RemoteRunner
    comm: Any = None
    state: dict[str, Any] = field(default_factory=dict)  # the last known state, in local identifiers
    buffers: dict[tuple[Any, ...], str] = field(default_factory=dict)  # state path -> base64 buffer


def _track(link: _Link, data: Any, buffers: list[str]) -> None:
    """Fold a state (an open, an update, an echo) into what a reloaded page is told."""
    state = data.get("state") if isinstance(data, dict) else None
    if not isinstance(state, dict) or data.get("method") not in (None, "update", "echo_update"):
        return
    paths = [tuple(p) for p in data.get("buffer_paths") or () if isinstance(p, list) and p]
    changed = set(state) | {p[0] for p in paths}
    link.buffers = {p: b for p, b in link.buffers.items() if p[0] not in changed}
    link.state.update(state)
    link.buffers.update(zip(paths, buffers, strict=False))


@dataclass(eq=False)
class _Session:
    """One session's comms as this process mirrors them; a new one replaces it when the runtime changes."""

    state: SessionState
    session_id: str
    links: dict[str, _Link] = field(default_factory=dict)  # by remote id
    display_ids: list[str] = field(default_factory=list)  # displays that show this session's widgets
    gone: str | None = None  # why the session's objects are gone, once they are
    forwarder: _Forwarder = field(default_factory=lambda: _Forwarder())

    def reverse(self) -> dict[str, str]:
        return {link.local_id: remote for remote, link in self.links.items()}


@dataclass(eq=False)
class _Batch:
    items: list[dict[str, Any]] = field(default_factory=list)
    parent: dict[str, Any] = field(default_factory=dict)
    runner: Any = None
    done: bool = False


class _Forwarder:
    """At most one request in flight per session; messages that arrive meanwhile form the next one.

    Each caller blocks until the request carrying its message has been answered and shown (the front end's
    widget throttle waits for that), so bursts from one widget never queue; callers from other threads that
    arrive while a request is in flight join the open batch, where a widget's later state update is merged
    into its earlier one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = _Batch()
        self._busy = False

    def submit(self, item: dict[str, Any], parent: dict[str, Any], runner: Any,
               send: Any) -> None:
        with self._cond:
            batch = self._open
            _merge(batch.items, item)
            batch.parent, batch.runner = parent, runner  # the latest message is the one the front end waits on
            while not batch.done:
                if not self._busy and batch is self._open:
                    self._busy, self._open = True, _Batch()
                    break
                self._cond.wait()
            else:
                return
        try:
            send(batch)
        finally:
            with self._cond:
                batch.done, self._busy = True, False
                self._cond.notify_all()


def _plain_update(item: dict[str, Any]) -> bool:
    data = item.get("data")
    return (item["kind"] == "msg" and isinstance(data, dict) and data.get("method") == "update"
            and not item["buffers"]
            and not data.get("buffer_paths") and isinstance(data.get("state"), dict))


def _merge(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    """Append ``item``, or fold a state update into the same widget's update just before it (later values win).

    Only the last one: an update never moves past another message (a click handler may read the state).
    """
    last = items[-1] if items else None
    if last is not None and last["comm_id"] == item["comm_id"] and _plain_update(last) and _plain_update(item):
        last["data"]["state"].update(item["data"]["state"])
        return
    items.append(item)


class CommBridge:
    """The session comms this process mirrors, by session and by local identifier."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sessions: dict[int, _Session] = {}  # id(SessionState) -> its current comms
        self._links: dict[str, _Link] = {}  # local id -> link

    # --- records from the session (cells, forwarded messages, live output) ----------------------------------
    def _current(self, state: SessionState) -> _Session:
        sess = self._sessions.get(id(state))
        session_id = state.client.session_id
        if sess is None or sess.state is not state or sess.session_id != session_id:
            if sess is not None and sess.state is state:
                sess.gone = sess.gone or "replaced"
            sess = self._sessions[id(state)] = _Session(state, session_id)
        return sess

    def new_runtime(self, state: SessionState) -> None:
        """The session's runtime was installed anew: comms of an earlier runtime there no longer exist."""
        with self._lock:
            sess = self._sessions.get(id(state))
            if sess is not None and sess.state is state and sess.links:
                sess.gone = sess.gone or "recycled"
                self._sessions.pop(id(state))

    def record(self, runner: RemoteRunner, state: SessionState, item: dict[str, Any]) -> dict[str, Any] | None:
        """One comm record from the session in local identifiers (the local twin made or retired), or None.

        None when nothing can show it (no kernel in this process) or it names a comm this kernel never saw.
        """
        kern = kernel()
        kind, remote = item.get("output_type"), item.get("comm_id")
        data, metadata, buffers = item.get("data"), item.get("metadata"), item.get("buffers")
        if kern is None or kind not in COMM_KINDS or not isinstance(remote, str):
            return None
        data = {} if data is None else data  # any JSON: a comm's data need not be widget state
        buffers = [b for b in buffers if isinstance(b, str)] if isinstance(buffers, list) else []
        with self._lock:
            sess = self._current(state)
            link = sess.links.get(remote)
            if kind == "comm_open" and link is None:
                link = self._open(kern, runner, sess, remote, str(item.get("target_name") or "comm"),
                                  item.get("target_module"))
            if link is None:
                return None
            table = {r: lk.local_id for r, lk in sess.links.items()}
            if kind == "comm_close":
                self._retire(kern, link)
        out: dict[str, Any] = {"output_type": kind, "comm_id": link.local_id, "data": _map_refs(data, table),
                               "metadata": metadata if isinstance(metadata, dict) else {}, "buffers": buffers}
        if kind != "comm_close":
            with self._lock:
                _track(link, out["data"], buffers)
        if kind == "comm_open":
            out["target_name"] = str(item.get("target_name") or "comm")
            if isinstance(item.get("target_module"), str):
                out["target_module"] = item["target_module"]
        return out

    def _open(self, kern: Any, runner: RemoteRunner, sess: _Session, remote: str, target: str,
              module: Any) -> _Link:
        link = _Link(uuid.uuid4().hex, remote, sess, runner)
        comm = _comm_class()(comm_id=link.local_id, primary=False, target_name=target,
                             target_module=module if isinstance(module, str) else None)
        comm.on_msg(lambda msg, link=link: self._from_front_end(link, msg, "msg"))
        comm.on_close(lambda msg, link=link: self._from_front_end(link, msg, "close"))
        link.comm = comm
        _manager(kern).register_comm(comm)
        _watch_control(_manager(kern))
        sess.links[remote] = self._links[link.local_id] = link
        return link

    def _retire(self, kern: Any, link: _Link) -> None:
        link.session.links.pop(link.remote_id, None)
        self._links.pop(link.local_id, None)
        if link.comm is not None:
            link.comm._closed = True
            _manager(kern).comms.pop(link.local_id, None)

    def show(self, state: SessionState, kind: str, view: Any, data: dict[str, Any],
             transient: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A display of a session widget in local identifiers; without its comm here, the bundle stays as it was.

        A ``display_data`` gets a display id (unless it has one) so that the notice of a recycled session can
        replace it later.
        """
        if kernel() is None or not isinstance(view, dict) or not isinstance(view.get("model_id"), str):
            return data, transient
        with self._lock:
            sess = self._current(state)
            link = sess.links.get(view["model_id"])
            if link is None:
                return data, transient
            data = {**data, WIDGET_VIEW: {**view, "model_id": link.local_id}}
            if kind == "display_data":
                if not transient.get("display_id"):
                    transient = {**transient, "display_id": f"aca-widget-{uuid.uuid4().hex}"}
                sess.display_ids.append(str(transient["display_id"]))
        return data, transient

    # --- messages from the front end --------------------------------------------------------------------------
    def _from_front_end(self, link: _Link, msg: dict[str, Any], kind: str) -> None:
        kern = kernel()
        if kern is None:
            return
        parent = kern.get_parent()
        sess = link.session
        if kind == "close":
            with self._lock:
                self._retire(kern, link)
        if sess.gone is None and _replaced(sess):
            sess.gone = "replaced"
        if sess.gone is not None:
            if kind != "close":  # closing a dead widget needs no notice
                self._say_gone(kern, sess, parent)
            return
        content = msg.get("content") or {}
        buffers = [base64.b64encode(bytes(b)).decode("ascii") for b in msg.get("buffers") or ()]
        with self._lock:
            if isinstance(content.get("data"), dict):
                _track(link, content["data"], buffers)
            data = _map_refs({} if content.get("data") is None else content["data"], sess.reverse())
        item = {"comm_id": link.remote_id, "kind": kind, "data": data, "metadata": msg.get("metadata") or {},
                "buffers": buffers}
        sess.forwarder.submit(item, parent, link.runner, lambda batch: self._send(kern, sess, batch))

    def _send(self, kern: Any, sess: _Session, batch: _Batch) -> None:
        from ._display import messages

        try:
            outcome: RunOutcome | None = batch.runner.forward(sess.state, batch.items)
        except BaseException as exc:  # network, auth, an interrupt: say it where the front end shows it
            from .._exceptions import error_message

            emit(kern, "stream", {"name": "stderr", "text": f"The widget's message did not reach the session "
                                                            f"{sess.session_id}: {error_message(exc)}\n"},
                 batch.parent)
            return
        if outcome is not None:
            for msg_type, content in messages(outcome):
                emit(kern, msg_type, content, batch.parent)
        if outcome is None or outcome.unknown_comms:
            sess.gone = sess.gone or "recycled"
            self._say_gone(kern, sess, batch.parent)

    def _say_gone(self, kern: Any, sess: _Session, parent: dict[str, Any]) -> None:
        """Replace the session's widget displays with a notice; disable the ones shown elsewhere."""
        why = ("is no longer this notebook's session (%aca_new_session, or new connection settings)"
               if sess.gone == "replaced" else
               "was recycled or its Python process restarted: its objects are gone")
        text = f"This widget lived in session {sess.session_id}, which {why}. Run its cell again to make it anew."
        html = f'<div style="color: var(--jp-warn-color0, #c0392b)">{escape(text)}</div>'
        for display_id in dict.fromkeys(sess.display_ids):
            emit(kern, "update_display_data", {"data": {"text/plain": text, "text/html": html}, "metadata": {},
                                               "transient": {"display_id": display_id}}, parent)
        for link in list(sess.links.values()):
            if "disabled" in link.state:
                emit(kern, "comm_msg", {"comm_id": link.local_id, "data": {
                    "method": "update", "state": {"disabled": True}, "buffer_paths": []}}, parent)
        emit(kern, "stream", {"name": "stderr", "text": text + "\n"}, parent)

    def add_states(self, data: dict[str, Any], buffers: list[Any]) -> tuple[dict[str, Any], list[Any]]:
        """ipywidgets' ``update_states`` answer with the mirrored widgets of live sessions added."""
        with self._lock:
            links = [link for link in self._links.values() if link.session.gone is None]
            states, paths = dict(data.get("states") or {}), list(data.get("buffer_paths") or [])
            for link in links:
                state = dict(link.state)
                states[link.local_id] = {"model_name": state.get("_model_name"),
                                         "model_module": state.get("_model_module"),
                                         "model_module_version": state.get("_model_module_version"),
                                         "state": state}
                for path, buffer in link.buffers.items():
                    paths.append([link.local_id, "state", *path])
                    buffers.append(base64.b64decode(buffer))
        return {**data, "states": states, "buffer_paths": paths}, buffers


_CONTROL = "jupyter.widget.control"


def _watch_control(manager: Any) -> None:
    """Have ipywidgets' control comm (a reloaded page's question for all states) answer for session widgets too.

    Its target is wrapped where it is registered already, and whenever ipywidgets registers it later.
    """
    if getattr(manager, "_aca_control_watched", False):
        return
    manager._aca_control_watched = True
    register = manager.register_target

    def register_target(name: str, f: Any) -> Any:
        return register(name, _with_session_states(f) if name == _CONTROL else f)

    manager.register_target = register_target
    if callable(manager.targets.get(_CONTROL)):
        manager.targets[_CONTROL] = _with_session_states(manager.targets[_CONTROL])


def _with_session_states(opened: Any) -> Any:
    if not callable(opened) or getattr(opened, "_aca", False):
        return opened

    def control_opened(comm: Any, msg: dict[str, Any]) -> None:
        opened(comm, msg)
        send = comm.send

        def send_states(data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
            if isinstance(data, dict) and data.get("method") == "update_states":
                data, buffers = BRIDGE.add_states(data, list(buffers or ()))
            send(data, metadata, buffers)

        comm.send = send_states

    control_opened._aca = True  # type: ignore[attr-defined]
    return control_opened


def _replaced(sess: _Session) -> bool:
    """The notebook moved on from that session: a new identifier, or new clients after a settings change."""
    client = sess.state.client
    closed = bool(getattr(getattr(client, "_http", None), "is_closed", False))
    return client.session_id != sess.session_id or closed


def _manager(kern: Any) -> Any:
    manager = getattr(kern, "comm_manager", None)
    if manager is None:
        import comm

        manager = comm.get_comm_manager()
    return manager


BRIDGE = CommBridge()
