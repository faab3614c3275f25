"""How remote outcomes look in Jupyter: messages, errors, the value, the progress line.

One translation serves both faces. :func:`messages` turns an outcome into the Jupyter messages a local kernel
would have sent for that cell, in order; the kernel sends them as they are. :func:`publish` replays the same
messages through IPython's own machinery for ``%%aca`` in a stock kernel (streams through ``sys.stdout``,
displays through the display publisher, the value through the displayhook, errors through ``_showtraceback``)
and leaves the failing error for the magic to raise, so IPython ends the cell the way it ends a local failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._runtime import COMM_KINDS
from ._tracebacks import BOLD, RED, RESET, error_line, exception_message

if TYPE_CHECKING:
    from ._runner import RunOutcome

__all__ = [
    "IPythonOutputs",
    "Progress",
    "RemoteError",
    "RemoteValue",
    "error_content",
    "in_kernel",
    "interrupted",
    "message",
    "messages",
    "one_line_error",
    "publish",
    "remote_exception",
]

Send = Callable[[str, dict[str, Any]], None]


class RemoteError(Exception):
    """A failure to show as a remote traceback (or one line), never as a traceback of our internals."""

    def __init__(self, evalue: str, traceback: list[str]) -> None:
        super().__init__(evalue)
        self.remote_traceback = traceback

    def _render_traceback_(self) -> list[str]:
        return self.remote_traceback


def _render_interrupt(self: KeyboardInterrupt) -> list[str]:
    return [f"{RED}{BOLD}KeyboardInterrupt{RESET}: {self}"]


# Named like the builtin so error replies say ename "KeyboardInterrupt", as clients (nbclient) expect.
_Interrupted = type("KeyboardInterrupt", (KeyboardInterrupt,),
                    {"_render_traceback_": _render_interrupt, "__module__": "aca_kernel.remote"})


def interrupted(message: str) -> KeyboardInterrupt:
    """A KeyboardInterrupt that shows as one plain sentence."""
    return _Interrupted(message)


_classes: dict[str, type[RemoteError]] = {}


def remote_exception(ename: str, evalue: str, traceback: list[str]) -> RemoteError:
    """An exception whose class is named like the remote one, so replies carry the remote ``ename``."""
    name = ename if ename.isidentifier() else "RemoteError"
    cls = _classes.get(name)
    if cls is None:
        cls = _classes[name] = type(name, (RemoteError,), {"__module__": "aca_kernel.remote"})
    return cls(evalue, traceback)


def one_line_error(exc: BaseException) -> RemoteError:
    """An exception shown as the one line of ``exc``, never as a traceback of our internals."""
    return remote_exception(type(exc).__name__, exception_message(exc), [error_line(exc)])


def error_content(exc: BaseException) -> dict[str, Any]:
    """The ``error`` message content for a failure of our own (network, auth, interrupt): one line."""
    if isinstance(exc, KeyboardInterrupt):
        return {"ename": "KeyboardInterrupt", "evalue": str(exc), "traceback": _render_interrupt(exc)}
    return {"ename": type(exc).__name__, "evalue": exception_message(exc), "traceback": [error_line(exc)]}


class RemoteValue:
    """The value of a remote cell's last expression: its MIME bundle, displayed like a local value."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self.data = data
        self.metadata = metadata or {}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "<remote value>"))


def in_kernel(shell: Any) -> bool:
    return getattr(shell, "kernel", None) is not None


def message(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The iopub message (type, content) of one nbformat-shaped output."""
    kind = item["output_type"]
    if kind in COMM_KINDS:  # a widget's message, in local ids: send it with _comms.emit
        return kind, {k: v for k, v in item.items() if k != "output_type"}
    if kind == "stream":
        return "stream", {"name": item["name"], "text": item["text"]}
    if kind == "error":
        return "error", {"ename": item["ename"], "evalue": item["evalue"], "traceback": item["traceback"]}
    if kind == "clear_output":
        return "clear_output", {"wait": item["wait"]}
    if kind == "execute_result":
        return "execute_result", {"data": item["data"], "metadata": item["metadata"],
                                  "execution_count": item.get("execution_count")}
    return kind, {"data": item["data"], "metadata": item["metadata"], "transient": item.get("transient") or {}}


def messages(outcome: RunOutcome, *, quiet: bool = False,
             failing_error: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """The iopub messages (type, content) a local kernel would have sent for this cell, in order.

    ``quiet`` leaves out everything but the failing error and widgets' comm messages; ``failing_error=False``
    leaves the failing error out too. A comm message's content carries its ``metadata`` and base64 ``buffers``:
    send those with :func:`aca_kernel.notebook._comms.emit`.
    """
    sent: list[tuple[str, dict[str, Any]]] = []
    if outcome.notices:
        sent.append(("stream", {"name": "stderr", "text": "".join(n + "\n" for n in outcome.notices)}))
    for item in outcome.outputs:
        if item is outcome.error:
            if not failing_error:
                continue
        elif quiet and item["output_type"] not in COMM_KINDS:  # a widget's state is kept even by a quiet cell
            continue
        sent.append(message(item))
    return sent


class IPythonOutputs:
    """A remote cell's outputs shown through IPython in the running cell (``%%aca`` in any IPython kernel).

    Streams go through ``sys.stdout``/``sys.stderr``, displays through the display publisher, the value through
    the displayhook in its place (before the figures a cell's end flushes, as locally) or, with
    ``return_value``, returned instead (``%aca`` as an expression), errors the cell went on after through
    ``_showtraceback``. The failing error is left for the magic to raise, so IPython ends the cell as it ends a
    local failure; while the cell runs an error is therefore held back until the next output shows it was not
    the last.
    """

    def __init__(self, shell: Any, *, return_value: bool = False) -> None:
        self.shell, self.return_value = shell, return_value
        self.value: RemoteValue | None = None
        self._held: dict[str, Any] | None = None

    def live(self, item: dict[str, Any]) -> None:
        """An output that arrived while the cell runs."""
        if self._held is not None:
            self._show(*message(self._held))
            self._held = None
        if item["output_type"] == "error":
            self._held = item
        else:
            self._show(*message(item))

    def finish(self, outcome: RunOutcome, *, quiet: bool = False) -> RemoteValue | None:
        """The rest of the outcome; the value when ``return_value``."""
        held, self._held = self._held, None
        failing = outcome.error
        if held is not None and not (failing is not None and failing not in outcome.outputs
                                     and _same_error(held, failing)):
            self._show(*message(held))
        for kind, content in messages(outcome, quiet=quiet, failing_error=False):
            self._show(kind, content)
        for payload in outcome.payload:
            source = payload.get("source")
            if source == "page":
                from IPython.core import page

                page.page(payload.get("data") or {}, int(payload.get("start") or 0))
            elif source == "set_next_input":
                self.shell.set_next_input(str(payload.get("text", "")), replace=bool(payload.get("replace")))
        return self.value if self.return_value else None

    def _show(self, kind: str, content: dict[str, Any]) -> None:
        from IPython.display import clear_output, publish_display_data

        if kind == "stream":
            target = sys.stderr if content["name"] == "stderr" else sys.stdout
            target.write(content["text"])
            target.flush()
        elif kind == "clear_output":
            clear_output(wait=content["wait"])
        elif kind == "error":  # shown, but the cell goes on (showtraceback() in the session)
            exc = remote_exception(content["ename"], content["evalue"], content["traceback"])
            self.shell._showtraceback(type(exc), exc, content["traceback"])
        elif kind == "execute_result":
            self.value = RemoteValue(content["data"], content["metadata"])
            if not self.return_value:
                self.shell.displayhook(self.value)
        elif kind in COMM_KINDS:
            from ._comms import emit

            if getattr(self.shell, "kernel", None) is not None:  # a terminal IPython has no front end for widgets
                emit(self.shell.kernel, kind, content)
        else:
            kwargs: dict[str, Any] = {"transient": content["transient"]} if content["transient"] else {}
            publish_display_data(content["data"], content["metadata"], update=kind == "update_display_data",
                                 **kwargs)


def _same_error(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["ename"], a["evalue"], a["traceback"]) == (b["ename"], b["evalue"], b["traceback"])


def publish(outcome: RunOutcome, shell: Any, *, quiet: bool = False,
            return_value: bool = False) -> RemoteValue | None:
    """Show a whole outcome through IPython (see :class:`IPythonOutputs`)."""
    return IPythonOutputs(shell, return_value=return_value).finish(outcome, quiet=quiet)


class Progress:
    """The elapsed-time line of a long cell: one display, updated in place, removed when the result comes.

    ``send(msg_type, content)`` delivers it: the kernel sends iopub messages itself, ``%%aca`` goes through
    IPython's display functions (:func:`ipython_sender`).
    """

    def __init__(self, send: Send | None, after: float, whole_cell: bool) -> None:
        self.send = send
        self.enabled = send is not None and after >= 0
        self.after, self.whole_cell = after, whole_cell
        self.display_id: str | None = None
        self.shown = -1

    def __call__(self, elapsed: float) -> None:
        if not self.enabled or elapsed < self.after or int(elapsed) == self.shown:
            return
        import uuid

        self.shown = int(elapsed)
        content = {"data": {"text/plain": f"running remotely… {self.shown} s"}, "metadata": {}}
        if self.display_id is None:
            self.display_id = uuid.uuid4().hex
            self.send("display_data", {**content, "transient": {"display_id": self.display_id}})
        else:
            self.send("update_display_data", {**content, "transient": {"display_id": self.display_id}})

    def finish(self) -> None:
        if self.display_id is None:
            return
        if self.whole_cell:
            self.send("clear_output", {"wait": False})  # the progress line is the cell's only output so far
        else:
            self.send("update_display_data", {"data": {"text/plain": ""}, "metadata": {},
                                              "transient": {"display_id": self.display_id}})
        self.display_id = None


def ipython_sender(shell: Any) -> Send | None:
    """A ``send`` for :class:`Progress` through IPython's display functions; None outside a kernel."""
    if not in_kernel(shell):
        return None

    def send(kind: str, content: dict[str, Any]) -> None:
        from IPython.display import clear_output, publish_display_data

        if kind == "clear_output":
            clear_output(wait=content["wait"])
        else:
            publish_display_data(content["data"], content["metadata"], transient=content.get("transient"),
                                 update=kind == "update_display_data")

    return send
