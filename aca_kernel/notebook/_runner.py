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

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._config import V2_API_VERSIONS
from . import _comms, _runtime, _values
from ._context import ACAContext, SessionState
from ._live import POLL_AFTER, LiveReader
from ._outcome import ExecutionInterrupted, RunOutcome, convert, cut_notice, from_plain, record_kind, streams
from ._replay import ReplayCell
from ._tracebacks import colorize_traceback, parse_stderr_error

if TYPE_CHECKING:
    from .._models import ExecutionResult

__all__ = ["ExecutionInterrupted", "RemoteRunner", "RunOutcome"]

logger = logging.getLogger("aca_kernel.runner")



def _pause(live: LiveReader | None) -> bool:
    """One short wait for a detached cell; True once its last chunk arrived."""
    if live is None or live.ended is not None or live.lost is not None:
        return True
    time.sleep(0.2)
    return live.ended is not None or live.lost is not None


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
              on_wait: Callable[[float], None] | None, give_up_after: float | None = None,
              live: LiveReader | None = None) -> ExecutionResult:
        client = state.client
        done, box = self._calls.start(lambda: client.execute(code, timeout=timeout))
        self._wait(state, done, on_wait, give_up_after, live)
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _wait(self, state: SessionState, done: threading.Event | None, on_wait: Callable[[float], None] | None,
              give_up_after: float | None, live: LiveReader | None) -> None:
        """Wait for ``done`` (or, without it, for a detached cell's last chunk) on the caller's thread.

        Short waits keep that thread responsive to SIGINT (the kernel's interrupt). The first interrupt asks the
        session to stop the cell and goes on waiting for its (interrupted) end; a second one gives up.
        """
        start = time.monotonic()
        asked_to_stop = False
        finished = (lambda: done.wait(0.2)) if done is not None else (lambda: _pause(live))
        while True:
            try:
                while not finished():
                    elapsed = time.monotonic() - start
                    if give_up_after is not None and elapsed > give_up_after:
                        raise TimeoutError(f"no reply within {give_up_after:.0f} s")
                    if live is not None:
                        live.tick(elapsed)
                    if on_wait is not None and (live is None or live.working is False):
                        try:
                            on_wait(elapsed)
                        except Exception as exc:  # a failing progress display must not abandon a running cell
                            logger.info("progress display failed: %s", exc)
                            on_wait = None
                break
            except KeyboardInterrupt:
                state.touch()
                if live is not None and not asked_to_stop and live.interrupt(done):
                    asked_to_stop = True
                    continue
                raise ExecutionInterrupted(state.client.session_id, asked_to_stop=asked_to_stop) from None
        state.touch()

    def _runtime_call(self, state: SessionState, make_code: Callable[[bool], str], timeout: float | None,
                      on_wait: Callable[[float], None] | None = None, give_up_after: float | None = None,
                      live: LiveReader | None = None) -> tuple[ExecutionResult, bool]:
        """Send a runtime call, installing the runtime first when the session lacks it.

        Returns the execution and whether the session turned out to have lost a runtime it had (recycled, or its
        kernel restarted). The repeat after ``MISSING`` is safe: the call checked for the runtime first.
        """
        lost = False
        if not state.runtime_ready:  # installing a runtime: the comms of an earlier one are gone (before any
            _comms.BRIDGE.new_runtime(state)  # record of this call, live ones included, is mirrored)
        result = self._call(state, make_code(not state.runtime_ready), timeout, on_wait, give_up_after, live)
        if result.succeeded and _runtime.is_missing(result.result):
            lost = state.runtime_ready
            state.runtime_ready = False
            _comms.BRIDGE.new_runtime(state)
            result = self._call(state, make_code(True), timeout, on_wait, give_up_after, live)
        if result.succeeded and not _runtime.is_missing(result.result):
            state.runtime_ready = True
        return result, lost

    # --- cells -----------------------------------------------------------------------------------------------
    def run(self, code: str, *, session: str | None = None, rich: bool | None = None, timeout: float | None = None,
            export_value: bool = False, on_wait: Callable[[float], None] | None = None,
            endpoint: str | None = None, api_version: str | None = None, count: int | None = None,
            store_history: bool = True, silent: bool = False, user_expressions: dict[str, str] | None = None,
            on_output: Callable[[dict[str, Any]], None] | None = None, detached: bool = False,
            on_live: Callable[[LiveReader], None] | None = None, job: bool = False) -> RunOutcome:
        """Run ``code`` once in the (named) session and return what to publish.

        ``count`` is the prompt number the cell gets in the session (``In[count]``, ``Cell In[count]``); by
        default the session's cells are numbered 1, 2, ... With ``on_output``, outputs produced while the cell
        runs are handed to it as they come (on the calling thread); the outcome then holds only the rest.
        ``detached`` runs the cell past the service's execution limit (started by one call, followed through its
        live output); ``job`` says this is a background cell itself (``_jobs``), which its session may run. Client
        errors (auth, network, configuration) propagate as ``ACASessionsError``; an
        interrupt that cannot stop the remote code raises :class:`ExecutionInterrupted`. A failing cell is an
        outcome with ``error`` set.
        """
        settings = self.context.settings
        if self.context.jobs is not None and endpoint is None and api_version is None and not job:
            self.context.jobs.check(session)
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
            from_plain(outcome, result, limit, export_value, v2)
        else:
            options = {"store_history": store_history, "silent": silent, "max_bytes": limit,
                       "colors": self.context.colors,
                       "user_expressions": user_expressions or None, "export": export_value,
                       "tag": uuid.uuid4().hex[:12] if export_value else None}
            live = None
            if detached or (on_output is not None and state.live_ok is not False):
                cell_id = uuid.uuid4().hex[:12]
                options["live"] = {"id": cell_id, "after": 0.5}
                live = LiveReader(self._calls, state, cell_id, on_output or (lambda item: None),
                                  lambda record: self._convert(state, record, count),
                                  poll_after=0.0 if detached else POLL_AFTER)
                if on_live is not None:
                    on_live(live)
            if detached:
                result, lost = self._detached(state, code, count, options, live)
            else:
                result, lost = self._runtime_call(
                    state, lambda install: _runtime.cell_code(code, count=count, options=options, install=install),
                    timeout, on_wait, live=live)
            self._note_local_pool(outcome)
            if live is not None and live.working is False and not state.live_noted:
                state.live_noted = True
                outcome.notices.append(
                    "Live output is not available on this pool: it serves no file calls while a cell runs, so "
                    "outputs appear when the cell ends, and an interrupt cannot stop the remote code.")
            outcome.execution = result
            lost, state.lost_pending = lost or state.lost_pending, False
            envelope = _runtime.parse_envelope(result.result) if result.succeeded else None
            if envelope is not None:
                self._lost(outcome, state, lost, envelope.runtime)
                self._from_envelope(outcome, envelope, result, state, limit, v2,
                                    skip=live.shown if live is not None else 0)
            else:
                if result.succeeded:
                    logger.info("the session's reply carried no envelope; showing the plain reply")
                from_plain(outcome, result, limit, export_value, v2)
        if outcome.ok and store_history and not silent:
            state.history.append(ReplayCell(count, code))
        return outcome

    def _detached(self, state: SessionState, code: str, count: int, options: dict[str, Any],
                  live: LiveReader) -> tuple[ExecutionResult, bool]:
        """Start the cell detached and follow its live output to its end; the execution holds the envelope."""
        from .._models import ExecutionResult

        started, lost = self._runtime_call(
            state, lambda install: _runtime.start_code(code, count=count, options=options, install=install), None)
        reply = _runtime.parse_reply(started.result) if started.succeeded else None
        if reply is None or not reply.get("started"):
            if reply is not None:  # the session cannot run it detached: say why, as the cell's failure
                return ExecutionResult("failed", "", f"RuntimeError: {reply.get('reason')}", None, None, None,
                                       {}), lost
            return started, lost
        self._wait(state, None, None, None, live)
        if live.ended is None:  # it will never end: its kernel died
            return ExecutionResult("failed", "", f"The background cell was lost: {live.lost}.", None, None, None,
                                   {}), lost
        try:  # its live files: the session keeps them until told they were read
            self._call(state, _runtime.forget_live_code(live.cell_id), None, None)
        except Exception as exc:
            logger.info("could not remove the live files of %s: %s", live.cell_id, exc)
        return ExecutionResult("succeeded", "", "", live.ended, None, None, {}), lost

    def _convert(self, state: SessionState, record: Any, count: int | None) -> dict[str, Any] | None:
        """``convert``, with widgets: their comm messages and views go through the comm bridge (``_comms``)."""
        if record_kind(record) in _comms.COMM_KINDS:
            return _comms.BRIDGE.record(self, state, record)  # in local ids; None: nothing can show it
        return convert(record, count, lambda kind, view, data, transient:
                       _comms.BRIDGE.show(state, kind, view, data, transient))

    def _note_local_pool(self, outcome: RunOutcome) -> None:
        if self.context.local_note_pending:  # said with the first reply, so a failed first call does not lose it
            self.context.local_note_pending = False
            outcome.notices.append(self.context.local_pool_note)

    def _lost(self, outcome: RunOutcome, state: SessionState, lost: bool, runtime: dict[str, Any] | None) -> None:
        if runtime is not None and isinstance(runtime.get("python"), str):
            state.python_version = runtime["python"]
        replaced, state.pool_replaced = state.pool_replaced, False  # the first reply from the new pool tells
        if not lost:
            return
        files_kept = bool(runtime and runtime.get("files_kept"))
        state.replay, state.files_kept = list(state.history), files_kept
        state.history.clear()
        outcome.session_lost = True
        outcome.replayable = len(state.replay) + len(state.packages)
        gone = "variables, imports and files in /mnt/data from earlier cells are gone"
        if files_kept:
            what = ("its Python process restarted (it crashed, ran out of memory or was restarted): variables and "
                    "imports from earlier cells are gone; files in /mnt/data are kept")
        elif replaced:
            what = f"the local session pool it ran on was replaced by a new one: {gone}"
        else:
            what = f"it was recycled (idle past the pool's cooldown, or deleted): {gone}"
        replay = (f" %aca_replay shows the {len(state.replay)} cell(s) that built that state, and re-runs them."
                  if state.replay or state.packages else "")
        outcome.notices.append(f"The remote session {state.client.session_id} lost its state: {what}.{replay}")

    def _from_envelope(self, outcome: RunOutcome, envelope: _runtime.Envelope, result: ExecutionResult,
                       state: SessionState, limit: int, v2: bool, skip: int = 0) -> None:
        # Output written below Python (C extensions, subprocesses) bypasses the runtime and arrives as the
        # service's own streams, ahead of what the runtime recorded.
        streams(outcome, result, limit, v2)
        last_error = None
        for index, record in enumerate(envelope.outputs):
            if index < skip:  # shown while the cell ran; only its errors matter now
                item = convert(record, outcome.count) if record_kind(record) == "error" else None
            else:
                item = self._convert(state, record, outcome.count)
            if item is None:
                continue
            if item["output_type"] == "error":
                last_error = item
            if index >= skip:  # records before `skip` were shown while the cell ran
                outcome.outputs.append(item)
        if envelope.truncated:
            outcome.outputs.append(cut_notice(limit))
        if envelope.status == "error" and envelope.error is not None:
            err = envelope.error
            failing = {"output_type": "error", "ename": str(err.get("ename") or "Error"),
                       "evalue": str(err.get("evalue") or ""),
                       "traceback": colorize_traceback([str(x) for x in err["traceback"]])}
            # The failing error is the last one the session showed; it is the cell's error, in its place.
            if last_error is not None and (last_error["ename"], last_error["evalue"]) == \
                    (failing["ename"], failing["evalue"]):
                outcome.error = last_error
            else:
                # IPython showed no traceback for it (a UsageError prints one line to stderr): neither do we; the
                # reply still says the cell failed.
                outcome.error = failing
        outcome.payload = [p for p in envelope.payload if isinstance(p.get("source"), str)]
        outcome.user_expressions = envelope.user_expressions
        if envelope.has_value:
            outcome.value, outcome.has_value = envelope.value, True
        elif envelope.value_file:
            try:
                outcome.value, outcome.has_value = _values.fetch(state, envelope.value_file), True
            except Exception as exc:  # the cell ran: its outputs are still shown, and it must not be re-run
                from .._exceptions import error_message

                outcome.notices.append(f"--out: the value could not be transferred ({error_message(exc)}).")
        elif envelope.value_error:
            outcome.notices.append(f"--out: the value could not be transferred ({envelope.value_error}).")

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
            from_plain(outcome, result, limit, False, v2)
        else:
            self._from_envelope(outcome, envelope, result, state, limit, v2)
            unknown = envelope.raw.get("unknown")
            outcome.unknown_comms = [str(u) for u in unknown] if isinstance(unknown, list) else []
        return outcome

    # --- values in and out (--out / -i) ----------------------------------------------------------------------
    def send_variable(self, name: str, value: Any, *, session: str | None = None, endpoint: str | None = None,
                      api_version: str | None = None) -> None:
        """Define ``name`` in the remote session: JSON values inline, anything else pickled and uploaded."""
        state = self.context.session(session, endpoint=endpoint, api_version=api_version)
        result = self._call(state, _values.loading_code(state, name, value), None, None)
        if not result.succeeded:
            ename, evalue, _ = parse_stderr_error(result.stderr)
            raise RuntimeError(f"-i {name}: the session could not load the value ({ename}: {evalue})")
        state.history.append(ReplayCell(None, "", sent_value=name))

    # --- a front end's own requests (kernel/_housekeeping.py) --------------------------------------------------
    def housekeeping(self, code: str, *, count: int, silent: bool = False,
                     user_expressions: dict[str, str] | None = None, setup: list[str] | None = None) -> RunOutcome:
        """Run a front end's request in the default session: one call, kept out of the session's history.

        ``setup``: the front end's set-up code, which the session runs first, once per process. Threads the request
        starts get half the time to finish (VS Code answers from one); it stops waiting after
        ``settings.housekeeping_timeout`` (``TimeoutError``). A session that lost its state gets no runtime
        installed by it (``RuntimeError``): the next cell installs it and says what was lost.
        """
        settings = self.context.settings
        state = self.context.session(None)
        limit = max(int(settings.max_output_bytes), 1024)
        options = {"store_history": False, "silent": silent, "max_bytes": limit, "colors": self.context.colors,
                   "user_expressions": user_expressions or None, "threads": settings.housekeeping_timeout / 2,
                   "setup": setup or None}
        code = _runtime.housekeeping_code(code, count=count, options=options, install=not state.runtime_ready)
        result = self._call(state, code, settings.timeout, None, settings.housekeeping_timeout)
        if result.succeeded and _runtime.is_missing(result.result):
            state.lost_pending = state.lost_pending or state.runtime_ready
            state.runtime_ready = False
            raise RuntimeError("the session lost its state; the next cell says so")
        envelope = _runtime.parse_envelope(result.result) if result.succeeded else None
        if envelope is None:
            raise RuntimeError("the session's reply carried no envelope")
        state.runtime_ready = True
        outcome = RunOutcome(count=count, execution=result)
        self._lost(outcome, state, False, envelope.runtime)
        self._from_envelope(outcome, envelope, result, state, limit, state.client.api_version in V2_API_VERSIONS)
        return outcome

    # --- completion and inspection ---------------------------------------------------------------------------
    def _reply(self, make_code: Callable[[bool], str], session: str | None, endpoint: str | None,
               api_version: str | None) -> dict[str, Any] | None:
        try:  # a bad endpoint or a local pool that cannot start mean no completions too, never an error
            if self.context.jobs is not None and self.context.jobs.busy(session) is not None:
                return None  # it would wait behind the background cell
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
