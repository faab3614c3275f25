"""The client's side of the session runtime: the code to send, and the parsing of what comes back (no I/O).

The runtime (``_session_runtime.py``, sent as source) is installed in a session once; each cell, completion or
inspection is then a one-line call to it. A call checks that the runtime is there before anything else, and
answers ``MISSING`` when it is not, so the caller can install it and send the same call again without the
user's code having run (a new session, or one that was recycled or whose kernel restarted). Plain Python
sessions (no IPython) are served by the same runtime in a simpler way.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["COMM_KINDS", "MISSING", "PARENT", "Envelope", "cell_code", "comm_code", "complete_code", "inspect_code",
           "needs_await", "parse_envelope", "parse_reply"]

_SOURCE = (Path(__file__).parent / "_session_runtime.py").read_text(encoding="utf-8")
RUNTIME_ID = hashlib.sha256(_SOURCE.encode()).hexdigest()[:12]
# The module name carries the runtime's CALL_TAG, which is how it recognises its own calls in the history.
MODULE = f"_aca_runtime_{RUNTIME_ID}"
MARKER = "@@ACA-RICH/2@@"
REPLY_MARKER = "@@ACA-REPLY/2@@"
MISSING = "@@ACA-MISSING/2@@"
# Records of a comm's messages (widgets) in an envelope's outputs, and the placeholder for the client's own
# request id in an Output widget's ``msg_id`` (``_session_runtime``'s comm section).
COMM_KINDS = ("comm_open", "comm_msg", "comm_close")
PARENT = "@@ACA-PARENT@@"

_SOURCE_B64 = base64.b64encode(_SOURCE.encode()).decode("ascii")
# One statement that defines the module (once) and patches the session's IPython; its value is not shown.
_INSTALL = (
    "(lambda s, m: (m if m is not None else (lambda m: (exec(compile(__import__('base64').b64decode("
    f"{_SOURCE_B64!r}).decode(), '<aca-runtime>', 'exec'), m.__dict__), s.__setitem__({MODULE!r}, m), m)[2])("
    f"__import__('types').ModuleType({MODULE!r}))).install())(__import__('sys').modules, "
    f"__import__('sys').modules.get({MODULE!r}))\n"
)
_MODULES = "__import__('sys').modules"
# what the runtime assumes when an option is left out (the call stays short)
_DEFAULTS: dict[str, Any] = {"store_history": True, "silent": False, "export": False, "user_expressions": {}}


def _call(expr: str, *, awaited: bool = False) -> str:
    call = f"{_MODULES}[{MODULE!r}].{expr}"
    if awaited:
        call = f"(await {call})"
    return f"{call} if {MODULE!r} in {_MODULES} else {MISSING!r}"


def cell_code(code: str, *, count: int, options: dict[str, Any] | None = None, install: bool = False) -> str:
    """The call that runs ``code`` as prompt number ``count``; with ``install``, preceded by the runtime itself.

    ``options``: ``store_history``, ``silent``, ``max_bytes``, ``user_expressions``, ``export``, ``tag``.
    """
    encoded = base64.b64encode(code.encode()).decode("ascii")
    opts = json.dumps({k: v for k, v in (options or {}).items() if v is not None and _DEFAULTS.get(k, ...) != v},
                      separators=(",", ":"))
    awaited = needs_await(code)
    body = _call(f"{'acell' if awaited else 'cell'}({encoded!r}, {int(count)}, {opts!r})", awaited=awaited)
    return (_INSTALL if install else "") + body


def complete_code(code: str, cursor_pos: int, *, install: bool = False) -> str:
    return (_INSTALL if install else "") + _call(f"complete({code!r}, {int(cursor_pos)})")


def inspect_code(name: str, detail_level: int, *, install: bool = False) -> str:
    return (_INSTALL if install else "") + _call(f"inspect_object({name!r}, {int(detail_level)})")


def comm_code(messages: list[dict[str, Any]], *, max_bytes: int | None = None) -> str:
    """The call that hands front-end messages to the session's comms; never installs (a new runtime has none).

    ``messages``: ``{"comm_id", "kind": "msg"|"close", "data", "metadata", "buffers": [base64]}`` in order.
    """
    batch = base64.b64encode(json.dumps(messages, separators=(",", ":")).encode()).decode("ascii")
    opts = json.dumps({"max_bytes": max_bytes} if max_bytes else {}, separators=(",", ":"))
    return _call(f"comm_deliver({batch!r}, {opts!r})")


def needs_await(code: str) -> bool:
    """True when ``code`` has top-level ``await``, so the session's IPython must await the call.

    Decided here because the call's own form (awaited or not) fixes how the session runs it: a plain call runs
    the cell synchronously, where SIGINT interrupts it as in a local kernel.
    """
    try:
        compile(code, "<cell>", "exec")
        return False
    except (SyntaxError, ValueError):
        pass
    source = code
    try:
        compiled = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):
        try:  # magics and shell escapes: IPython's own transforms make it Python first
            from IPython.core.inputtransformer2 import TransformerManager

            source = TransformerManager().transform_cell(code)
            compiled = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except Exception:
            return False  # a real syntax error: the session reports it
    return bool(compiled.co_flags & inspect.CO_COROUTINE)


@dataclass
class Envelope:
    """What one cell produced in the session, in order, and how it ended."""

    outputs: list[dict[str, Any]]
    status: str = "ok"
    error: dict[str, Any] | None = None
    payload: list[dict[str, Any]] = field(default_factory=list)
    user_expressions: dict[str, Any] = field(default_factory=dict)
    count: int = 0
    truncated: bool = False
    ipython: bool = True
    runtime: dict[str, Any] | None = None  # set on the first envelope after an install
    value: Any = None
    has_value: bool = False
    value_file: str | None = None
    value_error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _text(result: Any) -> str | None:
    if not isinstance(result, str):
        return None
    # A service may hand back the repr of the str (quoted) rather than the str itself.
    if result[:1] in "'\"" and result[-1:] == result[:1] and len(result) > 1 and result[1:2] == "@":
        try:
            value = ast.literal_eval(result)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, str) else None
    return result


def is_missing(result: Any) -> bool:
    """True when the call found no runtime in the session (nothing of the user's ran)."""
    return _text(result) == MISSING


def _marked(result: Any, marker: str) -> Any:
    text = _text(result)
    if text is None or not text.startswith(marker):
        return None
    try:
        return json.loads(text[len(marker):])
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_envelope(result: Any) -> Envelope | None:
    """The envelope in a cell call's value, or None when it is absent or unreadable."""
    body = _marked(result, MARKER)
    if not isinstance(body, dict) or body.get("v") != 2 or not isinstance(body.get("outputs"), list):
        return None
    outputs = [o for o in body["outputs"] if isinstance(o, dict) and isinstance(o.get("output_type"), str)]
    error = body.get("error")
    if not (isinstance(error, dict) and isinstance(error.get("traceback"), list)):
        error = None
    status = "error" if body.get("status") == "error" else "ok"
    if status == "error" and error is None:
        error = {"ename": "Error", "evalue": "the cell failed in the session", "traceback": []}
    payload = body.get("payload")
    runtime = body.get("runtime")
    return Envelope(
        outputs=outputs,
        status=status,
        error=error,
        payload=[p for p in payload if isinstance(p, dict)] if isinstance(payload, list) else [],
        user_expressions=_dict(body.get("user_expressions")),
        count=body["count"] if isinstance(body.get("count"), int) else 0,
        truncated=bool(body.get("truncated")),
        ipython=body.get("ipython", True) is not False,
        runtime=runtime if isinstance(runtime, dict) else None,
        value=body.get("value"),
        has_value="value" in body,
        value_file=body.get("value_file") if isinstance(body.get("value_file"), str) else None,
        value_error=body.get("value_error") if isinstance(body.get("value_error"), str) else None,
        raw=body,
    )


def parse_reply(result: Any) -> dict[str, Any] | None:
    """The JSON reply of a completion or inspection call, or None."""
    body = _marked(result, REPLY_MARKER)
    return body if isinstance(body, dict) else None
