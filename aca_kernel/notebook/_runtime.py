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
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["COMM_KINDS", "MISSING", "PARENT", "Envelope", "cell_code", "comm_code", "complete_code",
           "forget_live_code", "inspect_code", "live_chunk", "needs_await", "parse_envelope", "parse_reply",
           "start_code"]

_HERE = Path(__file__).parent
_LIVE_SOURCE = (_HERE / "_session_live.py").read_text(encoding="utf-8")
# The runtime's parts run in one namespace, in this order (see _session_runtime.py).
_PARTS = ("_session_runtime.py", "_session_routes.py", "_session_cells.py", "_session_comms.py",
          "_session_requests.py")
_SOURCE = "\n\n".join((_HERE / part).read_text(encoding="utf-8") for part in _PARTS)
RUNTIME_ID = hashlib.sha256((_LIVE_SOURCE + _SOURCE).encode()).hexdigest()[:12]
# The module name carries the runtime's CALL_TAG, which is how it recognises its own calls in the history.
MODULE = f"_aca_runtime_{RUNTIME_ID}"
MARKER = "@@ACA-RICH/2@@"
REPLY_MARKER = "@@ACA-REPLY/2@@"
MISSING = "@@ACA-MISSING/2@@"
# Records of a comm's messages (widgets) in an envelope's outputs, and the placeholder for the client's own
# request id in an Output widget's ``msg_id`` (``_session_runtime``'s comm section).
COMM_KINDS = ("comm_open", "comm_msg", "comm_close")
PARENT = "@@ACA-PARENT@@"


def _define(name: str, source: str) -> str:
    """An expression that creates module ``name`` from ``source`` once (kept in sys.modules) and is that module.

    The source travels compressed: the first call of a session carries it, and the service's kernel hashes a
    cell's source in pure Python (ipykernel), so every byte counts there.
    """
    encoded = base64.b64encode(zlib.compress(source.encode(), 9)).decode("ascii")
    return (
        f"(__import__('sys').modules.get({name!r}) or (lambda m: (exec(compile(__import__('zlib').decompress("
        f"__import__('base64').b64decode({encoded!r})).decode(), {'<' + name + '>'!r}, 'exec'), m.__dict__), "
        f"__import__('sys').modules.__setitem__({name!r}, m), m)[2])(__import__('types').ModuleType({name!r})))"
    )


# One statement that defines the modules (once) and patches the session's IPython; its value is not shown. The
# live-output module goes first: the runtime finds it by name.
_INSTALL = f"({_define(MODULE + '_live', _LIVE_SOURCE)}, {_define(MODULE, _SOURCE)}.install())\n"
_MODULES = "__import__('sys').modules"
# what the runtime assumes when an option is left out (the call stays short)
_DEFAULTS: dict[str, Any] = {"store_history": True, "silent": False, "export": False, "user_expressions": {}}


def _call(expr: str, *, awaited: bool = False) -> str:
    call = f"{_MODULES}[{MODULE!r}].{expr}"
    if awaited:
        call = f"(await {call})"
    return f"{call} if {MODULE!r} in {_MODULES} else {MISSING!r}"


def _cell_call(entry: str, code: str, count: int, options: dict[str, Any] | None, install: bool, *,
               awaited: bool = False, **extra: Any) -> str:
    """The call of runtime ``entry`` for ``code`` (base64) as prompt ``count`` with the options that differ."""
    encoded = base64.b64encode(code.encode()).decode("ascii")
    sent = {k: v for k, v in (options or {}).items() if v is not None and _DEFAULTS.get(k, ...) != v}
    opts = json.dumps({**sent, **extra}, separators=(",", ":"))
    return (_INSTALL if install else "") + _call(f"{entry}({encoded!r}, {int(count)}, {opts!r})", awaited=awaited)


def cell_code(code: str, *, count: int, options: dict[str, Any] | None = None, install: bool = False) -> str:
    """The call that runs ``code`` as prompt number ``count``; with ``install``, preceded by the runtime itself.

    ``options``: ``store_history``, ``silent``, ``max_bytes``, ``user_expressions``, ``export``, ``tag``,
    ``colors``, ``live``.
    """
    awaited = needs_await(code)
    return _cell_call("acell" if awaited else "cell", code, count, options, install, awaited=awaited)


def start_code(code: str, *, count: int, options: dict[str, Any], install: bool = False) -> str:
    """The call that starts ``code`` detached (it runs after the call returns; see ``_session_live``)."""
    return _cell_call("start", code, count, options, install, awaited_cell=needs_await(code))


def forget_live_code(cell_id: str) -> str:
    return _call(f"forget_live({cell_id!r})")


def complete_code(code: str, cursor_pos: int, *, install: bool = False) -> str:
    return (_INSTALL if install else "") + _call(f"complete({code!r}, {int(cursor_pos)})")


def inspect_code(name: str, detail_level: int, *, install: bool = False) -> str:
    return (_INSTALL if install else "") + _call(f"inspect_object({name!r}, {int(detail_level)})")


def housekeeping_code(code: str, *, count: int, options: dict[str, Any], install: bool = False) -> str:
    """``cell_code`` for a front end's own request (``threads``: seconds its threads get to finish)."""
    if needs_await(code):  # the awaited call runs it (without set-up); a front end's helpers have no top-level await
        return cell_code(code, count=count, options=options, install=install)
    return _cell_call("housekeeping", code, count, options, install)


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
        except (ValueError, SyntaxError, RecursionError, MemoryError):  # deep nesting: the parser's own limits
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
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder goes
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


LIVE_PREFIX = ".aca-live-"


def live_file(cell_id: str, suffix: str) -> str:
    """The name in /mnt/data of a live file of cell ``cell_id`` (a chunk number, or ``stop``)."""
    return f"{LIVE_PREFIX}{cell_id}-{suffix}"


def live_chunk(body: bytes) -> tuple[int, list[dict[str, Any]], str | None] | None:
    """(index of the first record, the records, the envelope if the cell ended) of a chunk; None if unreadable."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != 2 or not isinstance(data.get("from"), int) \
            or not isinstance(data.get("records"), list):
        return None
    end = data.get("end")
    return data["from"], data["records"], end if isinstance(end, str) else None
