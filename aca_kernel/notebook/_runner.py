"""The one path from a cell to Jupyter outputs, shared by the kernel, ``%%aca`` and other callers.

``RemoteRunner.run`` sends the cell as one short call to the session runtime (``_runtime``; installed with the
first call, and again when a call finds it missing), calls ``SessionsClient.execute`` once per attempt in a
worker thread so the caller's main thread stays interruptible, and turns the reply into a :class:`RunOutcome`:
nbformat-shaped outputs in the order the session produced them (``stream``, ``display_data``,
``update_display_data``, ``clear_output``, ``execute_result``, ``error``, and the comm records of widgets made
in the session, in local identifiers: ``_comms``), the failing error if any, payloads and user expressions. A
user's code is never sent twice: a call is repeated only when it answered that the runtime was missing, which it
checks before running anything. Nothing here imports IPython.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._config import V2_API_VERSIONS
from . import _comms, _runtime
from ._context import EXECUTION_LIMIT_S, ACAContext, SessionState
from ._replay import ReplayCell
from ._tracebacks import colorize_traceback, parse_stderr_error

if TYPE_CHECKING:
    from .._models import ExecutionResult

__all__ = ["ExecutionInterrupted", "RemoteRunner", "RunOutcome"]

logger = logging.getLogger("aca_kernel.runner")

# Widget views are shown only for widgets whose comm is mirrored here (``_comms``); the rest never.
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
    error: dict[str, Any] | None = None  # {"ename", "evalue", "traceback"}: the error that failed the cell
    notices: list[str] = field(default_factory=list)  # one-line notes for stderr, shown before the outputs
    payload: list[dict[str, Any]] = field(default_factory=list)  # page, set_next_input, ask_exit
    user_expressions: dict[str, Any] = field(default_factory=dict)
    count: int | None = None  # the prompt number the session ran the cell as
    session_lost: bool = False
    replayable: int = 0  # cells %aca_replay would re-run after a lost session
    value: Any = None
    has_value: bool = False
    execution: ExecutionResult | None = None
    unknown_comms: list[str] = field(default_factory=list)  # forwarded messages to comms the session lacks

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


class _Calls:
    """Blocking calls off the caller's thread, on reused daemon threads.

    Reused because a thread per cell costs time on the hot path; daemon because an abandoned call (an
    interrupted cell) must never hold up the process's exit; more than one because an abandoned call may
    still be waiting for its reply when the next one starts.
    """

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[queue.SimpleQueue[Any]] = queue.SimpleQueue()

    def start(self, func: Callable[[], Any]) -> tuple[threading.Event, dict[str, Any]]:
        done, box = threading.Event(), {}
        try:
            inbox = self._idle.get_nowait()
        except queue.Empty:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="aca-call", daemon=True).start()
        inbox.put((func, done, box))
        return done, box

    def _serve(self, inbox: queue.SimpleQueue[Any]) -> None:
        while True:
            func, done, box = inbox.get()
            try:
                box["result"] = func()
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()
            self._idle.put(inbox)


class RemoteRunner:
    """Runs cells of one :class:`ACAContext` remotely and converts the replies."""

    def __init__(self, context: ACAContext) -> None:
        self.context = context
        self._calls = _Calls()

    # --- the execute call ---------------------------------------------------------------------------------
    def _call(self, state: SessionState, code: str, timeout: float | None,
              on_wait: Callable[[float], None] | None, give_up_after: float | None = None) -> ExecutionResult:
        client = state.client
        done, box = self._calls.start(lambda: client.execute(code, timeout=timeout))
        start = time.monotonic()
        try:
            # Short waits keep the main thread responsive to SIGINT (the kernel's interrupt); a finished call
            # wakes the wait at once.
            while not done.wait(0.2):
                elapsed = time.monotonic() - start
                if give_up_after is not None and elapsed > give_up_after:
                    raise TimeoutError(f"no reply within {give_up_after:.0f} s")
                if on_wait is not None:
                    try:
                        on_wait(elapsed)
                    except Exception as exc:  # a failing progress display must not abandon a running cell
                        logger.info("progress display failed: %s", exc)
                        on_wait = None
        except KeyboardInterrupt:
            state.touch()
            raise ExecutionInterrupted(client.session_id) from None
        state.touch()
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _runtime_call(self, state: SessionState, make_code: Callable[[bool], str], timeout: float | None,
                      on_wait: Callable[[float], None] | None = None,
                      give_up_after: float | None = None) -> tuple[ExecutionResult, bool]:
        """Send a runtime call, installing the runtime first when the session lacks it.

        Returns the execution and whether the session turned out to have lost a runtime it had (recycled, or its
        kernel restarted). The repeat after ``MISSING`` is safe: the call checked for the runtime first.
        """
        lost = False
        result = self._call(state, make_code(not state.runtime_ready), timeout, on_wait, give_up_after)
        if result.succeeded and _runtime.is_missing(result.result):
            lost = state.runtime_ready
            state.runtime_ready = False
            result = self._call(state, make_code(True), timeout, on_wait, give_up_after)
        if result.succeeded and not _runtime.is_missing(result.result):
            state.runtime_ready = True
        return result, lost

    # --- cells -----------------------------------------------------------------------------------------------
    def run(self, code: str, *, session: str | None = None, rich: bool | None = None, timeout: float | None = None,
            export_value: bool = False, on_wait: Callable[[float], None] | None = None,
            endpoint: str | None = None, api_version: str | None = None, count: int | None = None,
            store_history: bool = True, silent: bool = False,
            user_expressions: dict[str, str] | None = None) -> RunOutcome:
        """Run ``code`` once in the (named) session and return what to publish.

        ``count`` is the prompt number the cell gets in the session (``In[count]``, ``Cell In[count]``); by
        default the session's cells are numbered 1, 2, ... Client errors (auth, network, configuration) propagate
        as ``ACASessionsError``; an interrupt raises :class:`ExecutionInterrupted`. A failing cell is an outcome
        with ``error`` set.
        """
        settings = self.context.settings
        state = self.context.session(session, endpoint=endpoint, api_version=api_version)
        outcome = RunOutcome()
        use_rich = settings.rich if rich is None else rich
        timeout = timeout if timeout is not None else settings.timeout
        limit = max(int(settings.max_output_bytes), 1024)
        v2 = state.client.api_version in V2_API_VERSIONS
        if count is None:
            count = state.count + 1
        if store_history and not silent:
            state.count = max(state.count, count)
        outcome.count = count
        if not use_rich:
            result = self._call(state, code, timeout, on_wait)
            self._note_local_pool(outcome)
            outcome.execution = result
            self._from_plain(outcome, result, limit, export_value, v2)
        else:
            options = {"store_history": store_history, "silent": silent, "max_bytes": limit,
                       "colors": self.context.colors,
                       "user_expressions": user_expressions or None, "export": export_value,
                       "tag": uuid.uuid4().hex[:12] if export_value else None}
            result, lost = self._runtime_call(
                state, lambda install: _runtime.cell_code(code, count=count, options=options, install=install),
                timeout, on_wait)
            self._note_local_pool(outcome)
            outcome.execution = result
            lost, state.lost_pending = lost or state.lost_pending, False
            envelope = _runtime.parse_envelope(result.result) if result.succeeded else None
            if envelope is not None:
                self._lost(outcome, state, lost, envelope.runtime)
                self._from_envelope(outcome, envelope, result, state, limit, v2)
            else:
                if result.succeeded:
                    logger.info("the session's reply carried no envelope; showing the plain reply")
                self._from_plain(outcome, result, limit, export_value, v2)
        if outcome.ok and store_history and not silent:
            state.history.append(ReplayCell(count, code))
        return outcome

    def _note_local_pool(self, outcome: RunOutcome) -> None:
        if self.context.local_note_pending:  # said with the first reply, so a failed first call does not lose it
            self.context.local_note_pending = False
            outcome.notices.append(self.context.local_pool_note)

    def _lost(self, outcome: RunOutcome, state: SessionState, lost: bool, runtime: dict[str, Any] | None) -> None:
        if runtime is not None and isinstance(runtime.get("python"), str):
            state.python_version = runtime["python"]
        if not lost:
            return
        files_kept = bool(runtime and runtime.get("files_kept"))
        state.replay, state.files_kept = list(state.history), files_kept
        state.history.clear()
        outcome.session_lost = True
        outcome.replayable = len(state.replay) + len(state.packages)
        what = ("its Python process restarted (it crashed, ran out of memory or was restarted): variables and "
                "imports from earlier cells are gone; files in /mnt/data are kept"
                if files_kept else
                "it was recycled (idle past the pool's cooldown, or deleted): variables, imports and files in "
                "/mnt/data from earlier cells are gone")
        replay = (f" %aca_replay shows the {len(state.replay)} cell(s) that built that state, and re-runs them."
                  if state.replay or state.packages else "")
        outcome.notices.append(f"The remote session {state.client.session_id} lost its state: {what}.{replay}")

    def _from_envelope(self, outcome: RunOutcome, envelope: _runtime.Envelope, result: ExecutionResult,
                       state: SessionState, limit: int, v2: bool) -> None:
        # Output written below Python (C extensions, subprocesses) bypasses the runtime and arrives as the
        # service's own streams, ahead of what the runtime recorded.
        self._streams(outcome, result, limit, v2)
        if envelope.runtime is not None:  # a new runtime there: the comms of an earlier one are gone
            _comms.BRIDGE.new_runtime(state)
        for item in envelope.outputs:
            kind = item.get("output_type")
            if kind in ("display_data", "update_display_data", "execute_result"):
                raw = _dict(item.get("data"))
                data = {k: v for k, v in raw.items() if not k.startswith(_DROP_MIMES)}
                transient, ran_as = _dict(item.get("transient")), item.get("execution_count")
                if _comms.WIDGET_VIEW in raw:  # shown when the widget's comm is mirrored here
                    view = raw[_comms.WIDGET_VIEW]
                    data, transient = _comms.BRIDGE.show(state, kind, view, data, transient)
                if not data:
                    continue
                item = {"output_type": kind, "data": data, "metadata": _dict(item.get("metadata")),
                        **({"transient": transient} if transient else {})}
                if kind == "execute_result":
                    item["execution_count"] = ran_as if isinstance(ran_as, int) else outcome.count
            elif kind == "stream":
                item = {"output_type": "stream", "name": "stderr" if item.get("name") == "stderr" else "stdout",
                        "text": str(item.get("text", ""))}
            elif kind == "error":
                tb = item.get("traceback")
                item = {"output_type": "error", "ename": str(item.get("ename") or "Error"),
                        "evalue": str(item.get("evalue") or ""),
                        "traceback": colorize_traceback([str(x) for x in tb]) if isinstance(tb, list) else []}
            elif kind == "clear_output":
                item = {"output_type": "clear_output", "wait": bool(item.get("wait"))}
            elif kind in _comms.COMM_KINDS:  # a widget's message in local ids (None: nothing can show it)
                item = _comms.BRIDGE.record(self, state, item)
                if item is None:
                    continue
            else:
                continue
            outcome.outputs.append(item)
        if envelope.truncated:
            outcome.outputs.append(self._cut_notice(limit))
        if envelope.status == "error" and envelope.error is not None:
            err = envelope.error
            failing = {"output_type": "error", "ename": str(err.get("ename") or "Error"),
                       "evalue": str(err.get("evalue") or ""),
                       "traceback": colorize_traceback([str(x) for x in err["traceback"]])}
            # The failing error is the last one the session showed; it is the cell's error, in its place.
            shown = [o for o in outcome.outputs if o["output_type"] == "error"]
            if shown and shown[-1]["ename"] == failing["ename"] and shown[-1]["evalue"] == failing["evalue"]:
                outcome.error = shown[-1]
            else:
                outcome.outputs.append(failing)
                outcome.error = failing
        outcome.payload = [p for p in envelope.payload if isinstance(p.get("source"), str)]
        outcome.user_expressions = envelope.user_expressions
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
            outcome.error = {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": tb}
            outcome.outputs.append(outcome.error)
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
        outcome.outputs.append({"output_type": "execute_result", "data": {"text/plain": text}, "metadata": {},
                                "execution_count": outcome.count})

    # --- messages from the front end to the session's widgets (``_comms``) ---------------------------------
    def forward(self, state: SessionState, messages: list[dict[str, Any]]) -> RunOutcome | None:
        """Hand front-end messages to the session's comms in one request; what their handlers produced.

        None when the session has no runtime (recycled, or its kernel restarted): nothing is installed, since
        a new runtime has none of the comms; the next cell says the state was lost.
        """
        settings = self.context.settings
        limit = max(int(settings.max_output_bytes), 1024)
        v2 = state.client.api_version in V2_API_VERSIONS
        result = self._call(state, _runtime.comm_code(messages, max_bytes=limit), settings.timeout, None)
        if result.succeeded and _runtime.is_missing(result.result):
            state.runtime_ready, state.lost_pending = False, state.runtime_ready or state.lost_pending
            return None
        outcome = RunOutcome()
        envelope = _runtime.parse_envelope(result.result) if result.succeeded else None
        if envelope is None:
            self._from_plain(outcome, result, limit, False, v2)
        else:
            self._from_envelope(outcome, envelope, result, state, limit, v2)
            unknown = envelope.raw.get("unknown")
            outcome.unknown_comms = [str(u) for u in unknown] if isinstance(unknown, list) else []
        return outcome

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
        state.history.append(ReplayCell(None, "", sent_value=name))

    # --- completion and inspection ---------------------------------------------------------------------------
    def _reply(self, make_code: Callable[[bool], str], session: str | None, endpoint: str | None,
               api_version: str | None) -> dict[str, Any] | None:
        try:  # a bad endpoint or a local pool that cannot start mean no completions too, never an error
            state = self.context.session(session, endpoint=endpoint, api_version=api_version)
            result, lost = self._runtime_call(state, make_code, None,
                                              give_up_after=self.context.settings.complete_timeout)
        except (Exception, KeyboardInterrupt) as exc:
            logger.info("completion/inspection request failed: %s", exc)
            return None
        if lost:  # said with the next cell, whose outcome carries the notice
            state.lost_pending = True
        return _runtime.parse_reply(result.result) if result.succeeded else None

    def complete(self, code: str, cursor_pos: int, *, session: str | None = None, endpoint: str | None = None,
                 api_version: str | None = None) -> dict[str, Any] | None:
        return self._reply(lambda install: _runtime.complete_code(code, cursor_pos, install=install),
                           session, endpoint, api_version)

    def inspect(self, name: str, detail_level: int = 0, *, session: str | None = None, endpoint: str | None = None,
                api_version: str | None = None) -> dict[str, Any] | None:
        return self._reply(lambda install: _runtime.inspect_code(name, detail_level, install=install),
                           session, endpoint, api_version)


_LOAD_PICKLE = (
    "{name} = (lambda os, pickle: (lambda p: (pickle.load(open(p, 'rb')), os.remove(p))[0])("
    "next(os.path.join(d, {remote!r}) for d in ('/mnt/data', os.environ.get('ACA_DATA_DIR') or '', os.getcwd()) "
    "if d and os.path.exists(os.path.join(d, {remote!r})))))(__import__('os'), __import__('pickle'))"
)
