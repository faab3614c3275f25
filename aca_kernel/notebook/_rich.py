"""Rich mode: the small wrapper sent around a cell, and the parsing of what comes back (no I/O).

The service returns only stdout, stderr and the value of the last expression (stdout may be cut at 4096
characters). In rich mode the cell is wrapped so that the remote IPython runs it with its own ``run_cell``
(tracebacks keep pointing at the user's lines) while every ``display()``, matplotlib figure, stream write, error
and the last expression's MIME bundle is recorded in order. The record comes back whole as the *value* of the
wrapper expression: a string ``@@ACA-RICH/<version>@@`` + JSON, the *envelope*. Binary MIME data is base64, as
in Jupyter messages. When the envelope is missing or garbled (the remote side is not IPython, a proxy mangled
it, an older wrapper) the caller falls back to plain mode for that reply.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENVELOPE_VERSION",
    "MARKER_PREFIX",
    "Envelope",
    "parse_envelope",
    "wrap_code",
]

ENVELOPE_VERSION = 1
MARKER_PREFIX = "@@ACA-RICH/"
MARKER = f"{MARKER_PREFIX}{ENVELOPE_VERSION}@@"

# Runs inside the remote session. It must stay compatible with the IPython and Python versions of the
# service image (3.10+, IPython 8+), touch nothing in the user's namespace except `_`, and never raise: any
# failure of the machinery itself is reported in the envelope instead.
_REMOTE_SOURCE = r'''
import base64, io, json, os, sys, types

MARKER = %(marker)r


def _data_dir():
    for d in ("/mnt/data", os.environ.get("ACA_DATA_DIR") or ""):
        if d and os.path.isdir(d) and os.access(d, os.W_OK):
            return d
    return os.getcwd()


def _state():
    st = sys.modules.get("_aca_session_state")
    fresh = st is None
    if fresh:
        st = types.ModuleType("_aca_session_state")
        st.count = 0
        st.last = None
        sys.modules["_aca_session_state"] = st
    st.count += 1
    return st, fresh


def _b64(v):
    return base64.b64encode(v).decode("ascii")


def _clean(obj):
    if isinstance(obj, bytes):
        return _b64(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _forget_envelopes(ip, st):
    # The wrapper's own value lands in Out/_ of the remote shell; drop it so big outputs do not pile up
    # there and `_` keeps meaning "the last value of *my* cell".
    ns = ip.user_ns
    out = ns.get("Out")
    if isinstance(out, dict):
        for k in [k for k, v in out.items() if isinstance(v, str) and v.startswith(MARKER)]:
            del out[k]
    for name in [k for k, v in ns.items() if isinstance(v, str) and v.startswith(MARKER)]:
        if name == "_":
            ns["_"] = st.last
        elif name in ("__", "___"):
            ns[name] = ""
        else:
            del ns[name]


def _export(value, tag):
    try:
        copy = json.loads(json.dumps(value, allow_nan=False))
        if copy == value:  # tuples, int keys, ... would come back changed: pickle those
            return {"value": copy}
    except (TypeError, ValueError):
        pass
    import pickle
    path = os.path.join(_data_dir(), ".aca-out-%%s.pkl" %% tag)
    try:
        with open(path, "wb") as f:
            pickle.dump(value, f, protocol=4)
        return {"value_file": os.path.basename(path)}
    except Exception as e:
        try:
            os.remove(path)
        except OSError:
            pass
        return {"value_error": "%%s: %%s" %% (type(e).__name__, e)}


def _plain_run(code, env):
    import ast as _ast
    tree = _ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(tree.body.pop().value)
    g = sys.modules["__main__"].__dict__
    exec(compile(tree, "<cell>", "exec"), g)
    if last is not None:
        v = eval(compile(last, "<cell>", "eval"), g)
        if v is not None:
            env["outputs"].append({"output_type": "execute_result", "data": {"text/plain": repr(v)}, "metadata": {}})


def _cell(code_b64, tag, max_bytes, export):
    # A generator: it yields (shell, code) once, where the caller runs the cell (sync or awaited), and
    # returns the envelope. Everything it patches is restored in its `finally`.
    code = base64.b64decode(code_b64).decode("utf-8")
    st, fresh = _state()
    env = {"v": %(version)d, "fresh": fresh, "count": st.count, "outputs": [], "truncated": False, "error": None}
    outputs = env["outputs"]
    budget = [max_bytes]

    def room(n):
        if n <= budget[0]:
            budget[0] -= n
            return True
        env["truncated"] = True
        return False

    def stream(name, text):
        if not text:
            return
        if not room(len(text)):
            text = text[: max(budget[0], 0)]
            budget[0] = 0
            if not text:
                return
        if outputs and outputs[-1]["output_type"] == "stream" and outputs[-1]["name"] == name:
            outputs[-1]["text"] += text
        else:
            outputs.append({"output_type": "stream", "name": name, "text": text})

    def bundle(kind, data, md, transient=None):
        data, md = _clean(data or {}), _clean(md or {})
        if not room(len(json.dumps(data))):
            data = {"text/plain": "[output of %%s omitted: over the output limit]" %% kind}
            md = {}
        item = {"output_type": kind, "data": data, "metadata": md}
        if transient:
            item["transient"] = _clean(transient)
        outputs.append(item)

    try:
        ip = get_ipython()  # noqa: F821
    except NameError:
        ip = None
    if ip is None:
        env["ipython"] = False
        _plain_run(code, env)
        return MARKER + json.dumps(env)

    from IPython.core import page as pagemod
    from IPython.core.displaypub import DisplayPublisher

    def pager(strng, start=0, screen_lines=0, pager_cmd=None):
        data = _clean(strng if isinstance(strng, dict) else {"text/plain": str(strng)})
        if room(len(json.dumps(data))):
            outputs.append({"output_type": "page", "data": data, "start": int(start or 0)})

    class Pub(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
            bundle("update_display_data" if update else "display_data", data, metadata, transient)

        def clear_output(self, wait=False):
            outputs.append({"output_type": "clear_output", "wait": bool(wait)})

    class Tee(io.TextIOBase):
        def __init__(self, name, real):
            self.name_, self.real = name, real

        def write(self, s):
            stream(self.name_, str(s))
            return len(s)

        def flush(self):
            pass

        def isatty(self):
            return False

        @property
        def encoding(self):
            return "utf-8"

        def fileno(self):
            return self.real.fileno()

    quiet = False
    try:
        from IPython.core.displayhook import DisplayHook
        quiet = DisplayHook.semicolon_at_end_of_expression(code)
    except Exception:
        pass
    result = {}

    def hook(value):
        if value is None or quiet:
            return
        result["value"] = value
        data, md = ip.display_formatter.format(value)
        result["bundle"] = (data, md)

    def showtb(etype, evalue, stb):
        env["error"] = {"ename": getattr(etype, "__name__", str(etype)), "evalue": str(evalue),
                        "traceback": [str(line) for line in stb]}

    _forget_envelopes(ip, st)
    saved = (sys.stdout, sys.stderr, sys.displayhook, ip.display_pub, ip.__dict__.get("_showtraceback"),
             pagemod.page)
    sys.stdout, sys.stderr = Tee("stdout", sys.stdout), Tee("stderr", sys.stderr)
    sys.displayhook = hook
    ip.display_pub = Pub(shell=ip)
    ip._showtraceback = showtb
    pagemod.page = pager
    try:
        yield ip, code
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            # Figures the backend did not show (non-inline backends): every figure the cell made is output.
            for num in plt.get_fignums():
                fig = plt.figure(num)
                buf = io.BytesIO()
                fig.savefig(buf, format="png", bbox_inches="tight")
                bundle("display_data", {"image/png": buf.getvalue(), "text/plain": repr(fig)}, {})
            plt.close("all")
    finally:
        sys.stdout, sys.stderr, sys.displayhook, ip.display_pub = saved[:4]
        pagemod.page = saved[5]
        if saved[4] is None:
            ip.__dict__.pop("_showtraceback", None)
        else:
            ip._showtraceback = saved[4]
    if "bundle" in result:
        bundle("execute_result", *result["bundle"])
        st.last = result["value"]
        ip.user_ns["_"] = result["value"]
    if export and env["error"] is None:
        env.update(_export(result.get("value"), tag))
    return MARKER + json.dumps(env)


def run(*args):
    steps = _cell(*args)
    try:
        ip, code = next(steps)
        try:
            ip.run_cell(code, store_history=False)
        except BaseException:
            steps.close()
            raise
        next(steps)
    except StopIteration as done:
        return done.value


async def run_async(*args):
    # Cells with top-level await: the wrapper itself is awaited by the remote IPython (autoawait).
    steps = _cell(*args)
    try:
        ip, code = next(steps)
        try:
            result = None
            try:
                try:
                    cell, error = ip.transform_cell(code), None
                except Exception:
                    cell, error = code, sys.exc_info()
                result = await ip.run_cell_async(code, store_history=False, transformed_cell=cell,
                                                 preprocessing_exc_tuple=error)
            finally:
                ip.events.trigger("post_execute")  # run_cell does this; run_cell_async does not
            ip.events.trigger("post_run_cell", result)
        except BaseException:
            steps.close()
            raise
        next(steps)
    except StopIteration as done:
        return done.value
'''

_ENTRY = (
    "{prefix}(lambda __aca_ns: (exec(__import__('base64').b64decode({src!r}).decode(), __aca_ns), "
    "__aca_ns[{func!r}]({code!r}, {tag!r}, {max_bytes!r}, {export!r}))[1])({{'__name__': '_aca_rich'}})"
)


def needs_await(code: str) -> bool:
    """True when ``code`` has top-level ``await`` (so the remote IPython must await the wrapper)."""
    try:
        compile(code, "<cell>", "exec")
        return False
    except (SyntaxError, ValueError):
        pass
    try:
        compiled = compile(code, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError):
        return False  # magics, or a real syntax error the remote side reports
    return bool(compiled.co_flags & inspect.CO_COROUTINE)


def _encoded_source() -> str:
    src = _REMOTE_SOURCE % {"marker": MARKER, "version": ENVELOPE_VERSION}
    return base64.b64encode(src.encode()).decode("ascii")


_SOURCE_B64 = _encoded_source()


def wrap_code(code: str, *, tag: str, max_output_bytes: int, export_value: bool = False) -> str:
    """The code to send for ``code`` in rich mode: one expression whose value is the envelope."""
    is_async = needs_await(code)
    return _ENTRY.format(
        prefix="await " if is_async else "",
        func="run_async" if is_async else "run",
        src=_SOURCE_B64,
        code=base64.b64encode(code.encode()).decode("ascii"),
        tag=tag,
        max_bytes=int(max_output_bytes),
        export=bool(export_value),
    )


@dataclass
class Envelope:
    """What a rich-mode cell displayed, in order, plus the session bookkeeping the wrapper keeps."""

    outputs: list[dict[str, Any]]
    error: dict[str, Any] | None = None
    fresh: bool = False
    count: int = 0
    truncated: bool = False
    ipython: bool = True
    value: Any = None
    has_value: bool = False
    value_file: str | None = None
    value_error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def marked_json(result: Any, marker: str) -> Any:
    """The JSON that follows ``marker`` in a result value, or None when it is absent or unreadable."""
    if not isinstance(result, str):
        return None
    text = result
    # Some service versions might hand back the repr of a str (with quotes) instead of the raw string.
    if text[:1] in "'\"" and text[-1:] == text[:1] and text[1:].startswith(marker):
        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
    if not isinstance(text, str) or not text.startswith(marker):
        return None
    try:
        return json.loads(text[len(marker):])
    except ValueError:
        return None


def parse_envelope(result: Any) -> Envelope | None:
    """The envelope carried by a rich-mode result value, or None when absent or unreadable."""
    body = marked_json(result, MARKER)
    if not isinstance(body, dict) or body.get("v") != ENVELOPE_VERSION or not isinstance(body.get("outputs"), list):
        return None
    outputs = [o for o in body["outputs"] if isinstance(o, dict) and isinstance(o.get("output_type"), str)]
    error = body.get("error")
    if error is not None and not (isinstance(error, dict) and isinstance(error.get("traceback"), list)):
        error = None
    return Envelope(
        outputs=outputs,
        error=error,
        fresh=bool(body.get("fresh")),
        count=body["count"] if isinstance(body.get("count"), int) else 0,
        truncated=bool(body.get("truncated")),
        ipython=body.get("ipython", True) is not False,
        value=body.get("value"),
        has_value="value" in body,
        value_file=body.get("value_file") if isinstance(body.get("value_file"), str) else None,
        value_error=body.get("value_error") if isinstance(body.get("value_error"), str) else None,
        raw=body,
    )
