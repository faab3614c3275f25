"""Completion and inspection from the remote session's own IPython (no I/O).

Each Tab or inspect request is one remote expression whose value is ``@@ACA-REPLY/1@@`` + JSON: the reply of
the remote ``Completer.completions`` or ``object_inspect_mime``. ``RemoteRunner.complete``/``inspect`` send it
with a short timeout; a missing or garbled reply means no completions rather than an error.
"""

from __future__ import annotations

import base64
from typing import Any

from ._rich import marked_json

__all__ = ["REPLY_MARKER", "complete_code", "inspect_code", "parse_json_reply"]

REPLY_MARKER = "@@ACA-REPLY/1@@"


_COMPLETE_SOURCE = r'''
def run(code, pos):
    from IPython.core.completer import provisionalcompleter
    ip = get_ipython()  # noqa: F821
    with provisionalcompleter():
        comps = list(ip.Completer.completions(code, pos))
    if comps:
        start, end = comps[0].start, comps[0].end
        comps = [c for c in comps if c.start == start and c.end == end]
    else:
        start = end = pos
    return {"matches": [c.text for c in comps], "cursor_start": start, "cursor_end": end,
            "metadata": {"_jupyter_types_experimental": [
                {"start": c.start, "end": c.end, "text": c.text, "type": c.type, "signature": c.signature}
                for c in comps]}}
'''

_INSPECT_SOURCE = r'''
def run(name, level):
    ip = get_ipython()  # noqa: F821
    try:
        bundle = ip.object_inspect_mime(name, detail_level=level)
    except KeyError:
        return {"found": False, "data": {}}
    if not getattr(ip, "enable_html_pager", False):
        bundle.pop("text/html", None)
    return {"found": True, "data": bundle}
'''

_REPLY_ENTRY = (
    "(lambda __aca_ns: (exec(__import__('base64').b64decode({src!r}).decode(), __aca_ns), "
    "{marker!r} + __import__('json').dumps(__aca_ns['run']({a!r}, {b!r}), default=str))[1])({{}})"
)


def _reply_code(source: str, a: Any, b: Any) -> str:
    src = base64.b64encode(source.encode()).decode("ascii")
    return _REPLY_ENTRY.format(src=src, marker=REPLY_MARKER, a=a, b=b)


def complete_code(code: str, cursor_pos: int) -> str:
    """Remote code whose value is the IPython completion reply for ``code`` at ``cursor_pos``."""
    return _reply_code(_COMPLETE_SOURCE, code, int(cursor_pos))


def inspect_code(name: str, detail_level: int) -> str:
    """Remote code whose value is the ``object_inspect_mime`` bundle of ``name``."""
    return _reply_code(_INSPECT_SOURCE, name, int(detail_level))


def parse_json_reply(result: Any) -> dict[str, Any] | None:
    body = marked_json(result, REPLY_MARKER)
    return body if isinstance(body, dict) else None
