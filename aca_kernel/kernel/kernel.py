"""``ACAKernel``: an IPython kernel whose cells run in a remote session, magics and all.

Each cell goes to the session as it is and the session's own IPython runs it (``aca_kernel.notebook``); the
kernel turns what comes back into the messages a local kernel would have sent and keeps its own execution
count and history in step. Only ``%%local`` cells, cells made of the kernel's own ``%aca...`` magics and
``%config`` of its own classes, and front ends' housekeeping requests until the session is in use
(``_housekeeping.py``) run here, in the local IPython (which also serves comms and widgets). This module holds
no protocol knowledge: the routing rule, the messages, completion/inspection forwarding, and the session
lifecycle (identifier at start, deleted at shutdown/restart).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from IPython.utils.tokenutil import token_at_cursor
from traitlets import Bool, Float, Int, Unicode

from .. import __version__
from ..notebook._comms import COMM_KINDS, emit
from ..notebook._context import ACAContext, ACASettings, get_context
from ..notebook._display import Progress, error_content, interrupted, message, messages
from ..notebook._runner import ExecutionInterrupted, RemoteRunner
from ..notebook.magics import _offer_replay, load_ipython_extension
from ._housekeeping import Housekeeping

__all__ = ["ACAKernel"]

logger = logging.getLogger("aca_kernel.kernel")

# Lines that act on this kernel rather than the session: its own magics, and %config of its own classes.
_KERNEL_LINE = re.compile(
    r"^%(aca\w*|load_ext\s+aca_sessions|reload_ext\s+aca_sessions|unload_ext\s+aca_sessions|"
    r"config\s+(ACASettings|ACAKernel)\b.*$)"
)


def _uploads_wait() -> contextlib.AbstractContextManager[None]:
    """Browser upload widgets of this kernel shown busy while a remote cell runs: their chunks cannot arrive
    meanwhile, and IPython's execute events, which they watch, do not fire for a remote cell."""
    chunked = sys.modules.get("aca_kernel.notebook._widgets._chunked")  # not imported: no such widget here
    return chunked.busy() if chunked is not None else contextlib.nullcontext()


def _route(code: str) -> tuple[str, str]:
    """("local"|"remote"|"mixed", code to run) for a cell: where it runs, and the part that runs there."""
    stripped = code.lstrip()
    first, _, rest = stripped.partition("\n")
    if first.rstrip() == "%%local":
        return "local", rest
    if first.split(" ", 1)[0] == "%%aca":
        return "local", code  # the magic sends its body, with its options
    lines = [ln.strip() for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    ours = [bool(_KERNEL_LINE.match(ln)) for ln in lines]
    if lines and all(ours):
        return "local", code
    if any(ours) and any(ln.startswith("%aca") for ln in lines):
        return "mixed", code
    return "remote", code


_WHERE_OPTIONS = {"--session": "session", "-s": "session", "--endpoint": "endpoint",
                  "--api-version": "api_version"}


def _remote_body(code: str) -> tuple[dict[str, str], int] | None:
    """Where the body of a cell runs remotely: (session options, offset of the body), or None when local.

    An ordinary cell is all body, in the default session; ``%%aca [--session NAME] ...`` has its body after
    the first line, in that session; ``%%local`` cells and the kernel's own magics run here.
    """
    stripped = code.lstrip()
    first, newline, _ = stripped.partition("\n")
    if first.split(" ", 1)[0] == "%%aca":
        if not newline:
            return None
        words = first.split()
        where: dict[str, str] = {}
        for i, word in enumerate(words[1:], 1):
            name, eq, value = word.partition("=")
            if name in _WHERE_OPTIONS and (eq or i + 1 < len(words)):
                where[_WHERE_OPTIONS[name]] = value if eq else words[i + 1]
        return where, len(code) - len(stripped) + len(first) + 1
    return None if _route(code)[0] == "local" else ({}, 0)


def _remote_target(code: str, cursor_pos: int) -> tuple[dict[str, str], int] | None:
    """(session options, body offset) when the cursor is in a remote body; None where IPython answers itself."""
    line = code[:cursor_pos].rsplit("\n", 1)[-1].lstrip()
    remote = _remote_body(code)
    if line.startswith(("%aca", "%%aca", "%%local")) or remote is None or cursor_pos < remote[1]:
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


_LARGE_REPLY = 1 << 20


def _result_size(result: Any) -> int:
    return len(result) if isinstance(result, str) else 0


def _release_memory() -> None:
    """Return freed heap to the system after a large reply.

    A reply with images passes through several multi-MB strings (HTTP body, JSON, messages) on two threads;
    glibc keeps the freed space, so without this the kernel's memory stepped up by tens of MB over a plotting
    notebook while a stock kernel's stayed flat (bench/memory.py).
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc
        return None


def _release_memory_soon() -> None:
    # once the iopub thread has sent the outputs and their buffers are gone
    timer = threading.Timer(1.0, _release_memory)
    timer.daemon = True
    timer.start()


def _versions_file() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "aca_sessions" / "session-python.json"


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
    housekeeping_timeout = Float(None, allow_none=True, config=True, help="Seconds for a front end's own requests.")
    keepalive = Float(None, allow_none=True, config=True, help="Touch the session every N seconds (0: off).")
    cooldown = Float(None, allow_none=True, config=True, help="The pool's cooldown, for expiry estimates.")
    complete_timeout = Float(None, allow_none=True, config=True, help="Seconds for completion/inspection.")
    detach = Bool(None, allow_none=True, config=True, help="Run cells detached: no execution time limit.")

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
        self.housekeeping = Housekeeping(self)
        # The client (httpx) is needed at the first cell; load it now, off the start-up path.
        threading.Thread(target=self._preload, name="aca-preload", daemon=True).start()

    @staticmethod
    def _preload() -> None:
        time.sleep(0.5)  # after the kernel's own start-up, which it would otherwise slow down
        with contextlib.suppress(Exception):
            import aca_kernel._client  # noqa: F401

    # --- kernel_info: the session's Python, and no debugger ------------------------------------------------------
    @property
    def kernel_info(self) -> dict[str, Any]:
        info = super().kernel_info
        # ipykernel offers its debugger, which would attach to this process while cells run in the session:
        # breakpoints would never be hit, so front ends must not offer it.
        info["supported_features"] = [f for f in info.get("supported_features", []) if f != "debugger"]
        return info

    @property
    def language_info(self) -> dict[str, Any]:  # type: ignore[override]
        info = dict(IPythonKernel.language_info)
        version = self._session_python()
        if version:
            info["version"] = version
            info["codemirror_mode"] = {"name": "ipython", "version": int(version.split(".")[0])}
        return info

    def _version_key(self) -> str:
        from .._config import public_endpoint

        endpoint = self.context.settings.endpoint
        return public_endpoint(endpoint) if endpoint else "local session pool"

    def _session_python(self) -> str | None:
        state = self.context.existing(None)
        if state is not None and state.python_version:
            return state.python_version
        try:  # what this endpoint's sessions ran last time, so the first kernel_info is right too
            return json.loads(_versions_file().read_text()).get(self._version_key())
        except (OSError, ValueError, AttributeError):
            return None

    def _remember_python(self, version: str) -> None:
        path = _versions_file()
        try:
            known = json.loads(path.read_text()) if path.exists() else {}
            if known.get(self._version_key()) == version:
                return
            known[self._version_key()] = version
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known))
        except (OSError, ValueError) as exc:
            logger.info("could not record the session's Python version: %s", exc)

    # --- execute ------------------------------------------------------------------------------------------------
    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: dict | None = None, allow_stdin: bool = False, *,
                         cell_meta: dict | None = None, cell_id: str | None = None) -> dict[str, Any]:
        where, body = _route(code)
        # Front ends' own requests (silent, or kept out of the history) follow the rule in _housekeeping.py.
        place = self.housekeeping.place(code, silent, store_history, where)
        if place == "session":
            return self.housekeeping.run(code, silent, user_expressions or {})
        if silent or where == "local" or place == "local":
            # Silent code prints nothing here either.
            with self._silenced() if silent else contextlib.nullcontext():
                return await super().do_execute(body, silent, store_history, user_expressions, allow_stdin,
                                                cell_meta=cell_meta, cell_id=cell_id)
        with _uploads_wait():
            return self._execute_remote(code, store_history, user_expressions or {}, refuse=where == "mixed")

    def _send(self, msg_type: str, content: dict[str, Any]) -> None:
        if msg_type in COMM_KINDS:  # a widget made in the session (its buffers go as binary frames)
            return emit(self, msg_type, content)
        self.send_response(self.iopub_socket, msg_type, content)

    def _send_output(self, item: dict[str, Any]) -> None:
        self._send(*message(item))

    def _execute_remote(self, code: str, store_history: bool, user_expressions: dict[str, str], *,
                        refuse: bool = False) -> dict[str, Any]:
        shell = self.shell
        count = shell.execution_count
        if store_history:
            shell.history_manager.store_inputs(count, code)  # history requests are answered here
            shell.execution_count += 1
        error: dict[str, Any] | None = None
        outcome = None
        if refuse:
            error = error_content(ValueError(
                "the %aca... magics run in this kernel, not in the session: put them in a cell of their own"))
        else:
            progress = Progress(self._send, self.context.settings.progress_after, True)
            try:
                outcome = self.runner.run(code, count=count, store_history=store_history,
                                          user_expressions=user_expressions, on_wait=progress,
                                          on_output=self._send_output, detached=self.context.settings.detach)
            except ExecutionInterrupted as exc:
                error = error_content(interrupted(str(exc)))
            except KeyboardInterrupt:
                error = error_content(interrupted(
                    "Interrupted while starting the session; no code of this cell ran remotely."))
            except Exception as exc:  # the client's one-line errors (network, auth, configuration)
                from .._exceptions import ACASessionsError
                from .._localpool import LocalPoolError

                if not isinstance(exc, ACASessionsError | LocalPoolError | OSError):
                    logger.warning("unexpected failure while running a remote cell", exc_info=exc)
                error = error_content(exc)
            finally:
                progress.finish()
        # as ipykernel counts: a cell kept out of the history reports the number before it
        reply: dict[str, Any] = {"status": "ok", "execution_count": count if store_history else count - 1,
                                 "user_expressions": {}, "payload": []}
        if outcome is not None:
            try:
                for kind, content in messages(outcome):
                    self._send(kind, content)
            except Exception as exc:  # a reply we cannot show must not take the kernel down
                logger.warning("could not show a remote cell's outputs", exc_info=exc)
                error = error_content(exc)
            if outcome.session_lost and outcome.replayable:
                _offer_replay(shell, shell.magics_manager.registry["ACAMagics"], None)
            state = self.context.existing(None)
            if state is not None and state.python_version:
                self._remember_python(state.python_version)
            reply["payload"] = self._payload(outcome.payload)
            if outcome.error is not None:
                error = {k: outcome.error[k] for k in ("ename", "evalue", "traceback")}
            else:
                reply["user_expressions"] = outcome.user_expressions
            if outcome.execution is not None and _result_size(outcome.execution.result) > _LARGE_REPLY:
                _release_memory_soon()
        elif error is not None:
            self._send("error", error)
        if error is not None:
            reply.update(status="error", **error)
        return reply

    def _payload(self, payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in payload:
            if item.get("source") == "ask_exit" and not item.get("keepkernel"):
                # `exit` in a cell ends a local kernel; this one ends with its session, as at shutdown.
                threading.Thread(target=self._exit_soon, daemon=True).start()
        return payload

    def _exit_soon(self) -> None:
        self.context.close(delete_sessions=True)
        self.shell.exit_now = True

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

    # --- completion and inspection -------------------------------------------------------------------------
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
        if target is None or not (target[0] or self.housekeeping.session_in_use()):  # see _housekeeping.py
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

