"""``ACAKernel``: IPython's kernel with each cell routed through ``%%aca`` (sparkmagic's design).

Because cells still run in the local IPython, widgets, comms, ``display()`` and local magics work as in any
IPython kernel; only the cell body goes to the remote session. This module holds no protocol knowledge: the
routing rule, completion/inspection forwarding, and the session lifecycle (identifier at start, deleted at
shutdown/restart).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from IPython.utils.tokenutil import token_at_cursor
from traitlets import Bool, Float, Int, Unicode

from .. import __version__
from ..notebook._context import ACAContext, ACASettings, get_context
from ..notebook._runner import RemoteRunner
from ..notebook.magics import load_ipython_extension

__all__ = ["ACAKernel"]

logger = logging.getLogger("aca_kernel.kernel")

# Line magics that act on the local kernel and so keep a cell local when it holds only them.
_LOCAL_LINE_MAGICS = ("aca", "config", "load_ext", "reload_ext", "unload_ext", "local")


def _runs_locally(code: str) -> bool:
    if code.lstrip().startswith("%%"):
        return True  # a cell magic owns the cell (%%aca with options, %%local, %%time, ...)
    lines = [ln.strip() for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        return True
    return all(ln.startswith("%") and ln[1:].split(" ", 1)[0].startswith(_LOCAL_LINE_MAGICS) for ln in lines)


_WHERE_OPTIONS = {"--session": "session", "-s": "session", "--endpoint": "endpoint",
                  "--api-version": "api_version"}


def _remote_body(code: str) -> tuple[dict[str, str], int] | None:
    """Where the body of a cell runs remotely: (session options, offset of the body), or None when local.

    An ordinary cell is all body, in the default session; ``%%aca [--session NAME] ...`` has its body after
    the first line, in that session; any other cell magic (``%%local``, ``%%time``, ...) runs in this kernel.
    """
    stripped = code.lstrip()
    if not stripped.startswith("%%"):
        return {}, 0
    first, newline, _ = stripped.partition("\n")
    words = first.split()
    if words[0] != "%%aca" or not newline:
        return None
    where: dict[str, str] = {}
    for i, word in enumerate(words[1:], 1):
        name, eq, value = word.partition("=")
        if name in _WHERE_OPTIONS and (eq or i + 1 < len(words)):
            where[_WHERE_OPTIONS[name]] = value if eq else words[i + 1]
    return where, len(code) - len(stripped) + len(first) + 1


def _remote_target(code: str, cursor_pos: int) -> tuple[dict[str, str], int] | None:
    """(session options, body offset) when the cursor is in a remote body; None where IPython answers itself."""
    line = code[:cursor_pos].rsplit("\n", 1)[-1].lstrip()
    remote = _remote_body(code)
    if line.startswith("%") or remote is None or cursor_pos < remote[1]:
        return None
    return remote


def _completion(reply: dict[str, Any] | None, pos: int, offset: int) -> dict[str, Any]:
    """A complete_reply from the remote reply, its positions moved from the body to the cell."""
    if reply is None:
        return {"status": "ok", "matches": [], "cursor_start": pos + offset, "cursor_end": pos + offset,
                "metadata": {}}
    metadata = reply.get("metadata") or {}
    types = metadata.get("_jupyter_types_experimental")
    if offset and isinstance(types, list):
        metadata = {**metadata, "_jupyter_types_experimental": [
            {**t, "start": int(t.get("start", pos)) + offset, "end": int(t.get("end", pos)) + offset}
            for t in types if isinstance(t, dict)]}
    return {"status": "ok", "matches": [str(m) for m in reply.get("matches") or []],
            "cursor_start": int(reply.get("cursor_start", pos)) + offset,
            "cursor_end": int(reply.get("cursor_end", pos)) + offset, "metadata": metadata}


class ACAKernel(IPythonKernel):
    """Run notebook cells in an Azure Container Apps dynamic session (or the local session pool)."""

    implementation = "aca_sessions"
    implementation_version = __version__
    banner = ("ACA Sessions — cells run in an Azure Container Apps dynamic session.\n"
              "%aca_session shows where; %%local runs a cell in this kernel.")

    # Unset (None) means: the ACA_ environment variable, else the built-in default (see ACASettings).
    endpoint = Unicode(None, allow_none=True, config=True, help="Pool management endpoint; unset: the local pool.")
    api_version = Unicode(None, allow_none=True, config=True, help="Data-plane API version.")
    token_scope = Unicode(None, allow_none=True, config=True, help="Entra token scope.")
    session_id = Unicode(None, allow_none=True, config=True, help="Session identifier (default: a fresh uuid4).")
    timeout = Float(None, allow_none=True, config=True, help="Seconds to wait for one cell.")
    rich = Bool(None, allow_none=True, config=True, help="Rich mode (full MIME bundles); False sends code as typed.")
    max_output_bytes = Int(None, allow_none=True, config=True, help="Cut a cell's outputs beyond this size.")
    progress_after = Float(None, allow_none=True, config=True, help="Seconds before the elapsed time shows.")
    keepalive = Float(None, allow_none=True, config=True, help="Touch the session every N seconds (0: off).")
    cooldown = Float(None, allow_none=True, config=True, help="The pool's cooldown, for expiry estimates.")
    complete_timeout = Float(None, allow_none=True, config=True, help="Seconds for completion/inspection.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        load_ipython_extension(self.shell)
        self.context: ACAContext = get_context(self.shell)
        settings = self.context.settings
        for name in ACASettings.class_own_traits(config=True):  # each setting has a kernel trait of its name
            value = getattr(self, name)
            if value is not None:
                setattr(settings, name, value)
        if not settings.session_id:
            settings.session_id = str(uuid.uuid4())  # the kernel's identifier exists from the start
        self.runner = RemoteRunner(self.context)
        self._route_remote = False
        self.shell.input_transformers_cleanup.append(self._route)

    def _route(self, lines: list[str]) -> list[str]:
        # Applied by IPython's transform_cell: the cell becomes the body of %%aca, history keeps the raw text.
        return ["%%aca\n", *lines] if self._route_remote and lines else lines

    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: dict | None = None, allow_stdin: bool = False, *,
                         cell_meta: dict | None = None, cell_id: str | None = None) -> dict[str, Any]:
        first, _, rest = code.lstrip().partition("\n")
        local = silent or _runs_locally(code)
        if first.strip() == "%%local":
            code, local = rest, True
        # Silent code (VS Code's start-up probes) stays local: it must not allocate a session or print.
        self._route_remote = not local
        try:
            with self._silenced() if silent else contextlib.nullcontext():
                return await super().do_execute(code, silent, store_history, user_expressions, allow_stdin,
                                                cell_meta=cell_meta, cell_id=cell_id)
        finally:
            self._route_remote = False

    @contextlib.contextmanager
    def _silenced(self) -> Iterator[None]:
        # Print nothing: stock ipykernel would still send the streams, displays and error of silent code. The
        # error goes into the reply only (the shell's _showtraceback is replaced), not to iopub.
        from IPython.utils.capture import capture_output

        shell = self.shell
        saved = shell.__dict__.get("_showtraceback")
        shell._showtraceback = self._silent_traceback
        try:
            with capture_output():
                yield
        finally:
            if saved is None:
                shell.__dict__.pop("_showtraceback", None)
            else:
                shell._showtraceback = saved

    def _silent_traceback(self, etype: Any, evalue: Any, stb: list[str]) -> None:
        self.shell._last_traceback = stb

    def _remote_ready(self) -> bool:
        # Completion must not be what starts the local pool; a configured endpoint is cheap to ask.
        return not self.context.uses_local_pool or self.context.local_pool is not None

    def do_complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        target = _remote_target(code, cursor_pos)
        if target is None:
            return super().do_complete(code, cursor_pos)
        where, offset = target
        pos = cursor_pos - offset
        reply = self.runner.complete(code[offset:], pos, **where) if self._remote_ready() else None
        try:
            return _completion(reply, pos, offset)
        except (TypeError, ValueError, AttributeError) as exc:  # a garbled reply: no completions, never a crash
            logger.info("unusable completion reply: %s", exc)
            return _completion(None, pos, offset)

    def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0,
                   omit_sections: Any = ()) -> dict[str, Any]:
        target = _remote_target(code, cursor_pos)
        if target is None:
            return super().do_inspect(code, cursor_pos, detail_level, omit_sections)
        where, offset = target
        name = token_at_cursor(code[offset:], cursor_pos - offset)
        reply = self.runner.inspect(name, detail_level, **where) if name and self._remote_ready() else None
        data = reply.get("data") if reply and reply.get("found") else None
        found = isinstance(data, dict)
        return {"status": "ok", "found": found, "data": data if found else {}, "metadata": {}}

    def do_shutdown(self, restart: bool) -> dict[str, Any]:
        # Restart and shutdown end the session (DELETE where the API version has it): a restarted kernel gets
        # a fresh identifier. Bounded, so a slow service cannot hold the shutdown.
        closer = threading.Thread(target=self.context.close, kwargs={"delete_sessions": True}, daemon=True)
        closer.start()
        closer.join(timeout=10)
        return super().do_shutdown(restart)
