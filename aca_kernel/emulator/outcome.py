"""What one execution produced: the iopub messages of an execute_request turned into the service's outcome.

No kernel and no jupyter_client here (``runtime.py`` drives the kernel), so ``backend.py`` can share the
messages without importing the runtime. Semantics (reference §4.5, §10): stdout holds only printed text,
``result`` the typed last-expression value or the figure image, failures carry the ANSI-free traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .limits import MAX_MESSAGE_BYTES, MAX_STREAM_CHARS, human_size

__all__ = ["ABORTED_MESSAGE", "DROPPED_NOTE", "TIMEOUT_MESSAGE", "VALUE_MIME", "Collector", "ExecOutcome",
           "format_error", "strip_ansi"]

VALUE_MIME = "application/vnd.aca.value+json"
TIMEOUT_MESSAGE = "Request timed out waiting for code execution to complete"
ABORTED_MESSAGE = "Execution aborted"
DROPPED_NOTE = (f"[the local session pool dropped output of this execution: one output or value was over its "
                f"{human_size(MAX_MESSAGE_BYTES)} message limit; write large results to a file in /mnt/data and "
                f"download it]\n")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


@dataclass
class ExecOutcome:
    """What one execution produced, in the service's terms (see the module docstring)."""

    status: str
    stdout: str
    stderr: str
    result: Any
    execution_time_ms: int
    kernel_died: bool = False
    timed_out: bool = False


class Collector:
    """Accumulates the iopub messages of one execute_request."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.sizes = {"stdout": 0, "stderr": 0}
        self.value: Any = ""
        self.has_value = False
        self.matplotlib_value = False
        self.image: str | None = None
        self.error: dict[str, Any] | None = None
        self.idle = False

    def add(self, msg: dict[str, Any]) -> None:
        """Take one message; one of an unexpected shape (code in the kernel can send any) is ignored."""
        kind, content = msg.get("msg_type"), msg.get("content")
        if not isinstance(content, dict):
            return
        if kind == "stream":
            name, text = content.get("name"), content.get("text")
            if name in ("stdout", "stderr") and isinstance(text, str):
                self._stream(name, text)
        elif kind == "execute_result":
            data = _dict(content.get("data"))
            typed = data.get(VALUE_MIME)
            if isinstance(typed, dict) and "value" in typed:
                self.value = typed["value"]
            else:
                self.value = data.get("text/plain", "")
                self.matplotlib_value = isinstance(typed, dict) and bool(typed.get("matplotlib"))
            self.has_value = True
        elif kind == "display_data":
            png = _dict(content.get("data")).get("image/png")
            if isinstance(png, str) and self.image is None:
                self.image = "".join(png.split())
        elif kind == "error":
            self.error = content
        elif kind == "status" and content.get("execution_state") == "idle":
            self.idle = True

    def _stream(self, name: str, text: str) -> None:
        # Past MAX_STREAM_CHARS the rest of the stream is dropped, not buffered without bound; a note says so.
        room = MAX_STREAM_CHARS - self.sizes[name]
        if room <= 0:
            return
        if len(text) > room:
            text = text[:room] + f"\n[{name} cut by the local session pool at {MAX_STREAM_CHARS:,} characters]\n"
            self.sizes[name] = MAX_STREAM_CHARS
        else:
            self.sizes[name] += len(text)
        (self.out if name == "stdout" else self.err).append(text)

    def stdout(self) -> str:
        return "".join(self.out)

    def outcome_without_idle(self, elapsed_ms: int, reply: dict[str, Any] | None, note: str) -> ExecOutcome:
        """The outcome when some messages were lost: the execute_reply, if it came, says how the code ended."""
        if self.error is None and reply is not None and reply.get("status") == "error":
            self.error = reply
        if self.error is None and reply is None:
            # Neither the error nor the reply arrived: whether the code raised is unknown, so it is not
            # reported as a success.
            self.error = {"ename": "Error", "evalue": "", "traceback": [
                "The code ended, but whether it raised an exception cannot be told: its error and its reply were "
                "both lost."]}
        outcome = self.outcome(elapsed_ms)
        outcome.stderr += note
        return outcome

    def outcome(self, elapsed_ms: int) -> ExecOutcome:
        stderr = "".join(self.err)
        if self.error is not None:
            return ExecOutcome("failed", self.stdout(), stderr + format_error(self.error), None, elapsed_ms)
        result = self.value
        if self.image is not None and (not self.has_value or self.value is None or self.matplotlib_value):
            result = {"type": "image", "format": "png", "base64_data": self.image}
        return ExecOutcome("succeeded", self.stdout(), stderr, result, elapsed_ms)


def format_error(content: dict[str, Any]) -> str:
    """The service's failure text: evalue, then IPython's traceback (ANSI-free), then a newline.

    The observed sample is ``"illegal target for annotation (x.py, line 6)  Cell In[2363], line 6\\n..."``: the
    evalue runs straight into the indented traceback; a traceback that starts unindented gets a line break.
    """
    evalue = strip_ansi(str(content.get("evalue", "")))
    traceback = content.get("traceback")
    tb = strip_ansi("\n".join(map(str, traceback)) if isinstance(traceback, list) else "")
    if not tb:
        tb = f"{content.get('ename', 'Error')}: {evalue}"
    if evalue and not tb[:1].isspace():
        evalue += "\n"
    return f"{evalue}{tb}\n"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
