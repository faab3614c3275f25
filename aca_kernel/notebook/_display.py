"""How remote outcomes look in Jupyter: tracebacks, errors, the value, the progress line, publishing.

Used by ``%%aca`` (and so by the kernel, which routes every cell through it). Streams go through
``sys.stdout``/``sys.stderr``; displays through ``publish_display_data``; the value is returned for IPython's
displayhook (an ``execute_result`` with the execution count); a failure becomes an exception whose class is
named like the remote one and whose ``_render_traceback_`` gives the remote traceback, so IPython sends one
``error`` message and an error reply. IPython is imported lazily: the runner uses the traceback parsing here.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._runner import RunOutcome

__all__ = [
    "Progress",
    "RemoteError",
    "RemoteValue",
    "colorize_traceback",
    "error_line",
    "in_kernel",
    "interrupted",
    "one_line_error",
    "parse_stderr_error",
    "publish",
    "remote_exception",
]

RED, GREEN, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[0m"

# --- a failure's stderr (plain mode, service messages) as an IPython-style error -------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")
_EXC_NAME = re.compile(r"(Error|Exception|Interrupt|Exit|Warning|Iteration|Timeout)$")


def parse_stderr_error(stderr: str, fallback_name: str = "RemoteError") -> tuple[str, str, list[str]]:
    """(ename, evalue, traceback lines) from a failed execution's stderr."""
    plain = _ANSI.sub("", stderr or "").rstrip()
    lines = plain.splitlines()
    ename, evalue, found = fallback_name, "", False
    for line in reversed(lines):
        if not line.strip():
            continue
        m = _ERROR_LINE.match(line.strip())
        if m and (_EXC_NAME.search(m.group(1)) or "." in m.group(1)):
            ename, evalue, found = m.group(1).rsplit(".", 1)[-1], (m.group(2) or "").strip(), True
            break
        if not evalue:
            evalue = line.strip()
        if m is None:
            break
    if not lines:
        evalue = evalue or "the remote execution failed without any message"
    if found:
        return ename, evalue, colorize_traceback(stderr.rstrip().splitlines())
    # Not a Python traceback (a service message such as a timeout): one line, plus any other text.
    rest = [line for line in lines if line.strip() and line.strip() != evalue]
    return ename, evalue, [f"{RED}{BOLD}{ename}{RESET}: {evalue}", *rest]


_CELL_REF = re.compile(r"^(\s*)((?:Cell In\s*\[\d+\]|File [^,]+|Input In \[\d+\]),.*)$")
_ARROW = re.compile(r"^(\s*)(-+>)(\s*\d+.*)$")


def colorize_traceback(lines: list[str]) -> list[str]:
    """Colour a plain-text IPython traceback the way IPython does; text already coloured is kept."""
    if any("\x1b[" in line for line in lines):
        return list(lines)
    lines = [part for line in lines for part in line.split("\n")]
    out: list[str] = []
    last_error = max((i for i, line in enumerate(lines)
                      if (m := _ERROR_LINE.match(line.strip())) and _EXC_NAME.search(m.group(1))), default=-1)
    for i, line in enumerate(lines):
        if i == last_error:
            name, sep, rest = line.partition(":")
            out.append(f"{RED}{BOLD}{name}{RESET}{sep}{rest}")
        elif m := _CELL_REF.match(line):
            out.append(f"{m.group(1)}{GREEN}{m.group(2)}{RESET}")
        elif m := _ARROW.match(line):
            out.append(f"{m.group(1)}{GREEN}{m.group(2)}{RESET}{m.group(3)}")
        elif line.startswith("-" * 20):
            out.append(f"{RED}{line}{RESET}")
        else:
            out.append(line)
    return out


# --- publishing ---------------------------------------------------------------------------------------

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


def _message(exc: BaseException) -> str:
    """The message of ``exc`` on one line, any bearer token masked ('' when it has none)."""
    from .._exceptions import error_message

    name = type(exc).__name__
    message = error_message(exc)
    return "" if message == name else message.removeprefix(name + ": ")


def error_line(exc: BaseException) -> str:
    """``exc`` as one coloured line, ``Class: message``, the way IPython ends a traceback."""
    message = _message(exc)
    return f"{RED}{BOLD}{type(exc).__name__}{RESET}" + (f": {message}" if message else "")


def one_line_error(exc: BaseException) -> RemoteError:
    """An exception shown as the one line of ``exc``, never as a traceback of our internals."""
    return remote_exception(type(exc).__name__, _message(exc), [error_line(exc)])


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


class Progress:
    """The elapsed-time line of a long cell: one display, updated in place, removed when the result comes."""

    def __init__(self, shell: Any, after: float, whole_cell: bool) -> None:
        self.enabled = in_kernel(shell) and after >= 0
        self.after, self.whole_cell = after, whole_cell
        self.handle: Any = None
        self.shown = -1

    def __call__(self, elapsed: float) -> None:
        if not self.enabled or elapsed < self.after or int(elapsed) == self.shown:
            return
        from IPython.display import display

        self.shown = int(elapsed)
        bundle = {"text/plain": f"running remotely… {self.shown} s"}
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)

    def finish(self) -> None:
        if self.handle is None:
            return
        if self.whole_cell:
            from IPython.display import clear_output

            clear_output()  # the progress line is the cell's only output so far
        else:
            self.handle.update({"text/plain": ""}, raw=True)
        self.handle = None


def publish(outcome: RunOutcome, *, quiet: bool = False) -> RemoteValue | None:
    """Send an outcome's notices and outputs; return the value to display as the execute_result."""
    from IPython.display import clear_output, publish_display_data

    for notice in outcome.notices:
        sys.stderr.write(notice + "\n")
    sys.stderr.flush()
    if quiet:
        return None
    results = [i for i, item in enumerate(outcome.outputs) if item["output_type"] == "execute_result"]
    last = results[-1] if results else None
    value = None
    for i, item in enumerate(outcome.outputs):
        kind = item["output_type"]
        if kind == "stream":
            target = sys.stderr if item.get("name") == "stderr" else sys.stdout
            target.write(item.get("text", ""))
            target.flush()
        elif kind == "clear_output":
            clear_output(wait=bool(item.get("wait")))
        elif kind == "page":
            from IPython.core import page

            page.page(item.get("data") or {}, int(item.get("start") or 0))  # the kernel's pager payload
        elif i == last:
            value = RemoteValue(item.get("data") or {}, item.get("metadata"))
        else:
            kwargs: dict[str, Any] = {}
            if item.get("transient"):
                kwargs["transient"] = item["transient"]
            if kind == "update_display_data":
                kwargs["update"] = True
            publish_display_data(item.get("data") or {}, item.get("metadata") or {}, **kwargs)
    return value
