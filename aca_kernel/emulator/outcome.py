"""What one execution produced: the iopub messages of an execute_request turned into the service's outcome.

No kernel and no jupyter_client here (``runtime.py`` drives the kernel), so ``backend.py`` can share the
messages without importing the runtime. Semantics (reference §4.5, §10): stdout holds only printed text,
``result`` the typed last-expression value or the figure image, failures carry the ANSI-free traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ABORTED_MESSAGE", "TIMEOUT_MESSAGE", "VALUE_MIME", "Collector", "ExecOutcome", "format_error",
           "strip_ansi"]

VALUE_MIME = "application/vnd.aca.value+json"
TIMEOUT_MESSAGE = "Request timed out waiting for code execution to complete"
ABORTED_MESSAGE = "Execution aborted"
# per stream: past this, further output of the cell is dropped rather than buffered without bound
MAX_STREAM_CHARS = 32 << 20
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
            if name in ("stdout", "stderr") and isinstance(text, str) and self.sizes[name] < MAX_STREAM_CHARS:
                self.sizes[name] += len(text)
                (self.out if name == "stdout" else self.err).append(text)
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

    def stdout(self) -> str:
        return "".join(self.out)

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
