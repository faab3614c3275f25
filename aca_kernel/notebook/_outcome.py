"""What a cell produced, as the kernel and the magic show it: the outcome, and the conversions into it (no I/O).

:class:`RunOutcome` holds nbformat-shaped outputs in the session's order, the failing error, payloads, user
expressions and one-line notices; :func:`convert` turns one record of the session runtime into such an output,
:func:`from_plain` a reply that carries no envelope (plain mode, a service message such as a timeout).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._comms import WIDGET_VIEW
from ._context import EXECUTION_LIMIT_S
from ._tracebacks import colorize_traceback, parse_stderr_error

if TYPE_CHECKING:
    from .._models import ExecutionResult

__all__ = ["SERVICE_STREAM_LIMIT", "ExecutionInterrupted", "RunOutcome", "convert", "cut_notice", "from_plain", "record_kind",
           "streams"]

# Widget views are shown only for widgets whose comm is mirrored here (``_comms``); the rest never.
_DROP_MIMES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json",
               "application/vnd.aca.")
# v2 API versions cut stdout/stderr at outputStreamsMaxLength, 4096 characters by default.
SERVICE_STREAM_LIMIT = 4096


class ExecutionInterrupted(KeyboardInterrupt):
    """The user interrupted while a cell was running remotely and the remote code could not be stopped."""

    def __init__(self, session_id: str, *, asked_to_stop: bool = False) -> None:
        if asked_to_stop:
            message = (f"The remote code did not stop at the interrupt: it may be inside a C extension that does "
                       f"not check for interrupts. It may keep session {session_id} busy for up to the execution "
                       f"limit ({EXECUTION_LIMIT_S} s); use %aca_new_session to continue on a fresh session now.")
        else:
            message = (f"Interrupted: stopped waiting for the remote cell, but it may still be running in session "
                       f"{session_id} (the pool did not take the interrupt: it serves no file calls while a cell "
                       f"runs, or does not answer) and may block that session for up to the execution limit "
                       f"({EXECUTION_LIMIT_S} s). Use %aca_new_session to continue on a fresh session right away.")
        super().__init__(message)


@dataclass
class RunOutcome:
    """What one remote cell produced, ready to publish."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None  # {"ename", "evalue", "traceback"}: the error that failed the cell
    notices: list[str] = field(default_factory=list)  # one-line notes for stderr, shown before the outputs
    payload: list[dict[str, Any]] = field(default_factory=list)  # page, set_next_input, ask_exit
    user_expressions: dict[str, Any] = field(default_factory=dict)
    count: int | None = None  # the prompt number the session ran the cell as
    session_lost: bool = False
    replayable: int = 0  # cells %aca_replay would re-run after a lost session
    value: Any = None
    has_value: bool = False
    execution: ExecutionResult | None = None
    unknown_comms: list[str] = field(default_factory=list)  # forwarded messages to comms the session lacks

    @property
    def ok(self) -> bool:
        return self.error is None


def _dict(value: Any) -> dict[str, Any]:
    """``value`` when the envelope holds a mapping there, else empty (a garbled field must not fail the cell)."""
    return value if isinstance(value, dict) else {}


def record_kind(record: Any) -> Any:
    return record.get("output_type") if isinstance(record, dict) else None


ShowView = Callable[[str, Any, dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]


def convert(record: Any, count: int | None, show_view: ShowView | None = None) -> dict[str, Any] | None:
    """A record of the session runtime as an nbformat output; None for what is not one (or is garbled).

    Fields of the wrong type are dropped or defaulted, never an error: the cell ran, and must not fail here. A
    widget's view is dropped unless ``show_view`` (the comm bridge) maps it to a widget mirrored here.
    """
    kind = record_kind(record)
    if kind in ("display_data", "update_display_data", "execute_result"):
        raw = _dict(record.get("data"))
        data = {k: v for k, v in raw.items() if not k.startswith(_DROP_MIMES)}
        transient, ran_as = _dict(record.get("transient")), record.get("execution_count")
        if show_view is not None and WIDGET_VIEW in raw:
            data, transient = show_view(kind, raw[WIDGET_VIEW], data, transient)
        if not data:
            return None
        item = {"output_type": kind, "data": data, "metadata": _dict(record.get("metadata")),
                **({"transient": transient} if transient else {})}
        if kind == "execute_result":
            item["execution_count"] = ran_as if isinstance(ran_as, int) else count
        return item
    if kind == "stream":
        return {"output_type": "stream", "name": "stderr" if record.get("name") == "stderr" else "stdout",
                "text": str(record.get("text", ""))}
    if kind == "error":
        tb = record.get("traceback")
        return {"output_type": "error", "ename": str(record.get("ename") or "Error"),
                "evalue": str(record.get("evalue") or ""),
                "traceback": colorize_traceback([str(x) for x in tb]) if isinstance(tb, list) else []}
    if kind == "clear_output":
        return {"output_type": "clear_output", "wait": bool(record.get("wait"))}
    return None


def streams(outcome: RunOutcome, result: ExecutionResult, limit: int, v2: bool) -> None:
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr if result.succeeded else "")):
        if not text:
            continue
        if len(text) > limit:
            outcome.outputs.append({"output_type": "stream", "name": name, "text": text[:limit]})
            outcome.outputs.append(cut_notice(limit))
            continue
        outcome.outputs.append({"output_type": "stream", "name": name, "text": text})
        if v2 and len(text) == SERVICE_STREAM_LIMIT:
            outcome.notices.append(
                f"The service cut {name} at {SERVICE_STREAM_LIMIT} characters; rich mode (the default, "
                f"without --plain) returns the full text."
            )


def cut_notice(limit: int) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stderr",
            "text": f"\n[output cut at {limit:,} bytes: raise it with %aca_config max_output_bytes=N, or write "
                    f"large results to a file in /mnt/data and fetch it with %aca_download]\n"}


def from_plain(outcome: RunOutcome, result: ExecutionResult, limit: int, export_value: bool,
                v2: bool) -> None:
    streams(outcome, result, limit, v2)
    if not result.succeeded:
        fallback = "TimeoutError" if "timed out" in result.stderr.lower() else "RemoteExecutionError"
        ename, evalue, tb = parse_stderr_error(result.stderr, fallback)
        if fallback == "TimeoutError":
            tb.append(f"The cell ran past its time limit (%%aca --timeout, or the service's {EXECUTION_LIMIT_S} s); "
                      f"nothing was retried.")
        outcome.error = {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": tb}
        outcome.outputs.append(outcome.error)
        return
    image = result.image
    if image is not None:
        data: dict[str, Any] = {"text/plain": f"<{image.mimetype} image>"}
        data[image.mimetype] = image.data.decode("utf-8", "replace") if image.mimetype == "image/svg+xml" \
            else image.base64_data
        outcome.outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
        return
    value = result.result
    if value is None or value == "":
        return
    if export_value:
        outcome.value, outcome.has_value = value, True
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > limit:
        text = text[:limit] + f"\n[value cut at {limit:,} bytes]"
    outcome.outputs.append({"output_type": "execute_result", "data": {"text/plain": text}, "metadata": {},
                            "execution_count": outcome.count})
