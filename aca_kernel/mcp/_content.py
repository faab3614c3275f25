"""A cell's outputs as tool-result content for a model: text sections and images (no MCP SDK here).

``RemoteRunner.run`` returns nbformat-shaped outputs (stream, display_data, execute_result, error, ...). A model
reads them best as a few labelled text sections (``[stdout]``, ``[result]``, ``[error]`` ...) with each figure or
image as an image block, in the order the cell produced them. Text is ANSI-free and every section is capped,
so one noisy cell cannot flood the model's context.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Image", "Text", "ToolResult", "outcome_result"]

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Image types models take as image content; SVG stays text (its source is readable, few hosts render it).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_OBJECT_REPR = re.compile(r"^<[\w.]+ object(?: at 0x[0-9a-f]+)?>$")


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Image:
    data: str  # base64, no whitespace
    mime_type: str


@dataclass
class ToolResult:
    """What a tool returns: content blocks, and whether it failed (an MCP tool error, ``isError``)."""

    blocks: list[Text | Image] = field(default_factory=list)
    is_error: bool = False

    @classmethod
    def error(cls, message: str) -> ToolResult:
        return cls([Text(message)], is_error=True)

    @classmethod
    def text(cls, message: str) -> ToolResult:
        return cls([Text(message)])


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return (text[:limit] + f"\n[... {len(text) - limit:,} more characters cut; write long output to a file in "
            f"/mnt/data and read it in parts]")


def cap_tail(text: str, limit: int) -> str:
    """Keep the end (of a traceback: where the exception is)."""
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit:,} characters of the traceback cut ...]\n" + text[-limit:]


def _as_text(value: Any) -> str:
    if isinstance(value, list):  # nbformat allows multi-line strings as lists of lines
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def bundle_text(data: dict[str, Any]) -> str | None:
    """The most useful text of a MIME bundle for a model, or None."""
    plain = _as_text(data["text/plain"]) if "text/plain" in data else None
    if "text/markdown" in data:
        return _as_text(data["text/markdown"])
    if "application/json" in data:
        return json.dumps(data["application/json"], ensure_ascii=False, indent=1)
    if plain is not None and not (_OBJECT_REPR.match(plain.strip()) and len(data) > 1):
        return plain  # a DataFrame's text table reads better than its HTML
    for mime in ("text/html", "text/latex", "image/svg+xml"):
        if mime in data:
            return _as_text(data[mime])
    return plain


class _Builder:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.blocks: list[Text | Image] = []
        self.pending: list[str] = []  # text sections not yet joined into a block

    def section(self, label: str, text: str, *, tail: str = "") -> None:
        """A labelled section; ``tail`` (a traceback) is capped from its start, keeping its last lines."""
        text = cap(strip_ansi(text).rstrip(), self.limit)
        if tail.strip():
            text += "\n" + cap_tail(strip_ansi(tail).rstrip(), self.limit)
        if text.strip():
            self.pending.append(f"[{label}]\n{text}")

    def image(self, data: str, mime_type: str) -> None:
        self.flush()
        self.blocks.append(Image("".join(data.split()), mime_type))

    def flush(self) -> None:
        if self.pending:
            self.blocks.append(Text("\n".join(self.pending)))
            self.pending = []

    def clear(self) -> None:
        # clear_output: what a notebook would no longer show, the model does not see either
        self.blocks, self.pending = [], []


def _add_output(builder: _Builder, item: dict[str, Any], streams: dict[str, list[str]]) -> None:
    kind = item.get("output_type")
    if kind == "stream":
        streams.setdefault(str(item.get("name") or "stdout"), []).append(_as_text(item.get("text", "")))
        return
    _flush_streams(builder, streams)
    if kind == "clear_output":
        builder.clear()
        return
    data = item.get("data") if isinstance(item.get("data"), dict) else {}
    if kind in ("display_data", "update_display_data", "execute_result"):
        image = next((m for m in IMAGE_TYPES if isinstance(data.get(m), str)), None)
        if image is not None:
            builder.image(data[image], image)
            return
        text = bundle_text(data)
        if text is not None:
            builder.section("result" if kind == "execute_result" else "display", text)
    elif kind == "error":  # the cell's own error, or one it showed and went on (showtraceback())
        head = f"{item.get('ename', 'Error')}: {item.get('evalue', '')}".rstrip(": ")
        builder.section("error", head, tail="\n".join(str(line) for line in item.get("traceback") or []))


def _flush_streams(builder: _Builder, streams: dict[str, list[str]]) -> None:
    for name in ("stdout", "stderr"):
        if streams.get(name):
            builder.section(name, "".join(streams.pop(name)))
    for name in list(streams):
        builder.section(name, "".join(streams.pop(name)))


def outcome_result(outcome: Any, *, limit: int) -> ToolResult:
    """A ``RunOutcome`` (outputs, error, notices) as a tool result; a failed cell is an error result."""
    builder = _Builder(limit)
    streams: dict[str, list[str]] = {}
    for item in outcome.outputs:
        if isinstance(item, dict):
            _add_output(builder, item, streams)
    _flush_streams(builder, streams)
    for payload in getattr(outcome, "payload", None) or []:  # `obj?` and help pages
        if payload.get("source") == "page" and isinstance(payload.get("data"), dict):
            text = bundle_text(payload["data"])
            if text is not None:
                builder.section("help", text)
    error = outcome.error
    if error is not None and not any(item is error for item in outcome.outputs):
        _add_output(builder, {"output_type": "error", **error}, streams)
    builder.flush()
    blocks = builder.blocks or [Text("The code ran and printed nothing; it had no value to show.")]
    notes = [f"[note] {strip_ansi(n)}" for n in outcome.notices]
    return ToolResult([Text("\n".join(notes)), *blocks] if notes else blocks, is_error=error is not None)
