"""The one path from a cell to Jupyter outputs, shared by the kernel and ``%%aca``.

``RemoteRunner.run`` wraps the code for rich mode (``_rich``), calls ``SessionsClient.execute`` once (never
retried: the code may have run) in a worker thread so the caller's main thread stays interruptible, and turns
the reply into nbformat-shaped output dicts (``stream``, ``display_data``, ``update_display_data``,
``clear_output``, ``execute_result``) plus an optional ``error``. The caller publishes them; nothing here
imports IPython.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._config import V2_API_VERSIONS
from . import _introspect, _rich
from ._context import EXECUTION_LIMIT_S, ACAContext, SessionState
from ._display import colorize_traceback, parse_stderr_error

if TYPE_CHECKING:
    from .._models import ExecutionResult

__all__ = ["ExecutionInterrupted", "RemoteRunner", "RunOutcome"]

logger = logging.getLogger("aca_kernel.runner")

# MIME types not to forward: widget models live in the remote kernel, which has no comms to this frontend,
# and the local pool's own value formatter (application/vnd.aca.value+json) is for the service reply only.
_DROP_MIMES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json",
               "application/vnd.aca.")
# v2 API versions cut stdout/stderr at outputStreamsMaxLength, 4096 characters by default.
SERVICE_STREAM_LIMIT = 4096


class ExecutionInterrupted(KeyboardInterrupt):
    """The user interrupted while a cell was running remotely; the remote execution is not cancelled."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"Interrupted: stopped waiting for the remote cell, but it may still be running in session "
            f"{session_id} and may block that session for up to the execution limit ({EXECUTION_LIMIT_S} s). "
            f"Use %aca_new_session to continue on a fresh session right away."
        )


@dataclass
class RunOutcome:
    """What one remote cell produced, ready to publish."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None  # {"ename", "evalue", "traceback"}
    notices: list[str] = field(default_factory=list)  # one-line notes for stderr, shown before the outputs
    session_lost: bool = False
    replayable: int = 0  # cells %aca_replay would re-run after a lost session
    value: Any = None
    has_value: bool = False
    execution: ExecutionResult | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _dict(value: Any) -> dict[str, Any]:
    """``value`` when the envelope holds a mapping there, else empty (a garbled field must not fail the cell)."""
    return value if isinstance(value, dict) else {}


def _is_json_value(value: Any) -> bool:
    """True when JSON carries ``value`` exactly (a tuple or int-keyed dict would come back changed)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        return False


class RemoteRunner:
    """Runs cells of one :class:`ACAContext` remotely and converts the replies."""

    def __init__(self, context: ACAContext) -> None:
        self.context = context

    # --- the execute call ---------------------------------------------------------------------------------
    def _call(self, state: SessionState, code: str, timeout: float | None,
              on_wait: Callable[[float], None] | None, give_up_after: float | None = None) -> ExecutionResult:
        box: dict[str, Any] = {}
        done = threading.Event()
        client = state.client

        def work() -> None:
            try:
                box["result"] = client.execute(code, timeout=timeout)
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="aca-execute", daemon=True).start()
        start = time.monotonic()
        try:
            # Short waits keep the main thread responsive to SIGINT (the kernel's interrupt).
            while not done.wait(0.2):
                elapsed = time.monotonic() - start
                if give_up_after is not None and elapsed > give_up_after:
                    raise TimeoutError(f"no reply within {give_up_after:.0f} s")
                if on_wait is not None:
                    try:
                        on_wait(elapsed)
                    except Exception as exc:  # a progress display that fails must not abandon a running cell
                        logger.info("progress display failed: %s", exc)
                        on_wait = None
        except KeyboardInterrupt:
            state.touch()
            raise ExecutionInterrupted(client.session_id) from None
        state.touch()
        if "error" in box:
            raise box["error"]
        return box["result"]

    # --- cells -----------------------------------------------------------------------------------------------
    def run(self, code: str, *, session: str | None = None, rich: bool | None = None, timeout: float | None = None,
            export_value: bool = False, on_wait: Callable[[float], None] | None = None,
            endpoint: str | None = None, api_version: str | None = None) -> RunOutcome:
        """Run ``code`` once in the (named) session and return what to publish.

        Client errors (auth, network, configuration) propagate as ``ACASessionsError``; an interrupt raises
        :class:`ExecutionInterrupted`. A failing cell is an outcome with ``error`` set.
        """
        settings = self.context.settings
        state = self.context.session(session, endpoint=endpoint, api_version=api_version)
        outcome = RunOutcome()
        use_rich = settings.rich if rich is None else rich
        use_rich = use_rich and not state.plain_only
        timeout = timeout if timeout is not None else settings.timeout
        limit = max(int(settings.max_output_bytes), 1024)
        tag = uuid.uuid4().hex[:12]
        sent = _rich.wrap_code(code, tag=tag, max_output_bytes=limit, export_value=export_value) if use_rich else code
        result = self._call(state, sent, timeout, on_wait)
        outcome.execution = result
        if self.context.local_note_pending:  # said with the first reply, so a failed first call does not lose it
            self.context.local_note_pending = False
            outcome.notices.append(self.context.local_pool_note)
        envelope = _rich.parse_envelope(result.result) if use_rich and result.succeeded else None
        if envelope is not None and not envelope.ipython:
            state.plain_only = True  # the remote side is plain Python: stop wrapping from now on
        if envelope is not None:
            self._from_envelope(outcome, envelope, result, state, limit)
        else:
            if use_rich and result.succeeded:
                logger.info("rich envelope missing or unreadable; showing the plain reply")
            self._from_plain(outcome, result, limit, export_value, state.client.api_version in V2_API_VERSIONS)
        if outcome.ok:
            state.history.append(code)
        return outcome

    def _lost(self, outcome: RunOutcome, envelope: _rich.Envelope, state: SessionState) -> None:
        if envelope.fresh and state.rich_cells > 0:
            outcome.session_lost = True
            state.replay = list(state.history)
            state.history.clear()
            outcome.replayable = len(state.replay)
            outcome.notices.append(
                f"The remote session {state.client.session_id} was recycled (idle past the pool's cooldown, or "
                f"it crashed): variables, imports and files from earlier cells are gone. "
                f"Run %aca_replay to re-run the {len(state.replay)} cell(s) that built them."
            )
        state.rich_cells += 1

    def _from_envelope(self, outcome: RunOutcome, envelope: _rich.Envelope, result: ExecutionResult,
                       state: SessionState, limit: int) -> None:
        self._lost(outcome, envelope, state)
        # Output written below Python (C extensions, subprocesses) bypasses the wrapper and arrives as the
        # service's own streams, ahead of what the wrapper recorded.
        self._streams(outcome, result, limit, state.client.api_version in V2_API_VERSIONS)
        for item in envelope.outputs:
            kind = item.get("output_type")
            if kind in ("display_data", "update_display_data", "execute_result"):
                data = _dict(item.get("data"))
                data = {k: v for k, v in data.items() if not k.startswith(_DROP_MIMES)}
                if not data:
                    continue
                transient = _dict(item.get("transient"))
                item = {"output_type": kind, "data": data, "metadata": _dict(item.get("metadata")),
                        **({"transient": transient} if transient else {})}
            elif kind == "stream":
                item = {"output_type": "stream", "name": item.get("name", "stdout"), "text": str(item.get("text", ""))}
            elif kind == "page":
                data = _dict(item.get("data"))
                if not data:
                    continue
                start = item.get("start")
                item = {"output_type": "page", "data": data, "start": start if isinstance(start, int) else 0}
            elif kind != "clear_output":
                continue
            outcome.outputs.append(item)
        if envelope.truncated:
            outcome.outputs.append(self._cut_notice(limit))
        if envelope.error is not None:
            err = envelope.error
            outcome.error = {"ename": str(err.get("ename") or "Error"), "evalue": str(err.get("evalue") or ""),
                             "traceback": colorize_traceback([str(x) for x in err["traceback"]])}
        if envelope.has_value:
            outcome.value, outcome.has_value = envelope.value, True
        elif envelope.value_file:
            try:
                outcome.value, outcome.has_value = self._fetch_value(state, envelope.value_file), True
            except Exception as exc:  # the cell ran: its outputs are still shown, and it must not be re-run
                from .._exceptions import error_message

                outcome.notices.append(f"--out: the value could not be transferred ({error_message(exc)}).")
        elif envelope.value_error:
            outcome.notices.append(f"--out: the value could not be transferred ({envelope.value_error}).")

    def _streams(self, outcome: RunOutcome, result: ExecutionResult, limit: int, v2: bool) -> None:
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr if result.succeeded else "")):
            if not text:
                continue
            if len(text) > limit:
                outcome.outputs.append({"output_type": "stream", "name": name, "text": text[:limit]})
                outcome.outputs.append(self._cut_notice(limit))
                continue
            outcome.outputs.append({"output_type": "stream", "name": name, "text": text})
            if v2 and len(text) == SERVICE_STREAM_LIMIT:
                outcome.notices.append(
                    f"The service cut {name} at {SERVICE_STREAM_LIMIT} characters; rich mode (the default, "
                    f"without --plain) returns the full text."
                )

    @staticmethod
    def _cut_notice(limit: int) -> dict[str, Any]:
        return {"output_type": "stream", "name": "stderr",
                "text": f"\n[output cut at {limit:,} bytes: raise it with %aca_config max_output_bytes=N, or write "
                        f"large results to a file in /mnt/data and fetch it with %aca_download]\n"}

    def _from_plain(self, outcome: RunOutcome, result: ExecutionResult, limit: int, export_value: bool,
                    v2: bool) -> None:
        self._streams(outcome, result, limit, v2)
        if not result.succeeded:
            fallback = "TimeoutError" if "timed out" in result.stderr.lower() else "RemoteExecutionError"
            ename, evalue, tb = parse_stderr_error(result.stderr, fallback)
            if fallback == "TimeoutError":
                tb.append(f"The cell ran past its time limit (%%aca --timeout, or the service's {EXECUTION_LIMIT_S} s); "
                          f"nothing was retried.")
            outcome.error = {"ename": ename, "evalue": evalue, "traceback": tb}
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
        outcome.outputs.append({"output_type": "execute_result", "data": {"text/plain": text}, "metadata": {}})

    # --- values in and out (--out / -i) ----------------------------------------------------------------------
    def _fetch_value(self, state: SessionState, remote_name: str) -> Any:
        # Through a local temporary file: memory holds the unpickled object once, not the bytes as well.
        fd, path = tempfile.mkstemp(prefix="aca-out-", suffix=".pkl")
        os.close(fd)
        try:
            state.client.download_file(remote_name, path)
            with open(path, "rb") as f:
                return pickle.load(f)  # the user's own session wrote it, at the user's request
        finally:
            os.remove(path)
            try:
                state.client.delete_file(remote_name)
            except Exception as exc:
                logger.info("could not delete %s from the session: %s", remote_name, exc)

    def send_variable(self, name: str, value: Any, *, session: str | None = None, endpoint: str | None = None,
                      api_version: str | None = None) -> None:
        """Define ``name`` in the remote session: JSON values inline, anything else pickled and uploaded."""
        state = self.context.session(session, endpoint=endpoint, api_version=api_version)
        if _is_json_value(value):
            code = f"{name} = __import__('json').loads({json.dumps(value)!r})"
        else:
            remote = f".aca-in-{uuid.uuid4().hex[:12]}.pkl"
            fd, path = tempfile.mkstemp(prefix="aca-in-", suffix=".pkl")
            try:
                with os.fdopen(fd, "wb") as f:
                    pickle.dump(value, f, protocol=4)
                state.client.upload_file(path, remote)
            finally:
                os.remove(path)
            state.touch()
            code = _LOAD_PICKLE.format(name=name, remote=remote)
        result = self._call(state, code, None, None)
        if not result.succeeded:
            ename, evalue, _ = parse_stderr_error(result.stderr)
            raise RuntimeError(f"-i {name}: the session could not load the value ({ename}: {evalue})")
        state.history.append(f"# -i {name} (a local value sent to the session)")

    # --- completion and inspection ---------------------------------------------------------------------------
    def _reply(self, code: str, session: str | None, endpoint: str | None,
               api_version: str | None) -> dict[str, Any] | None:
        try:  # a bad endpoint or a local pool that cannot start mean no completions too, never an error
            state = self.context.session(session, endpoint=endpoint, api_version=api_version)
            result = self._call(state, code, None, None, give_up_after=self.context.settings.complete_timeout)
        except (Exception, KeyboardInterrupt) as exc:
            logger.info("completion/inspection request failed: %s", exc)
            return None
        return _introspect.parse_json_reply(result.result) if result.succeeded else None

    def complete(self, code: str, cursor_pos: int, *, session: str | None = None, endpoint: str | None = None,
                 api_version: str | None = None) -> dict[str, Any] | None:
        return self._reply(_introspect.complete_code(code, cursor_pos), session, endpoint, api_version)

    def inspect(self, name: str, detail_level: int = 0, *, session: str | None = None, endpoint: str | None = None,
                api_version: str | None = None) -> dict[str, Any] | None:
        return self._reply(_introspect.inspect_code(name, detail_level), session, endpoint, api_version)


_LOAD_PICKLE = (
    "{name} = (lambda os, pickle: (lambda p: (pickle.load(open(p, 'rb')), os.remove(p))[0])("
    "next(os.path.join(d, {remote!r}) for d in ('/mnt/data', os.environ.get('ACA_DATA_DIR') or '', os.getcwd()) "
    "if d and os.path.exists(os.path.join(d, {remote!r})))))(__import__('os'), __import__('pickle'))"
)
