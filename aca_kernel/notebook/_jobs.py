"""Background cells: ``%%aca --background`` runs a cell in the session without holding up this kernel.

The cell runs detached in the session (no execution time limit; see ``_session_live``) and a thread here follows
its live output into an ipywidgets ``Output`` under the cell, with a status line and a Stop button; its value,
error and figures arrive when it ends. Following it polls the session's files, which also keeps the session
from reaching its idle cooldown. ``%aca_jobs`` lists the cells and stops one. While a background cell runs, its
session runs nothing else (other cells would queue behind it), so cells for that session are refused with a
line that says what to do; other (named) sessions and ``%%local`` cells work as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._exceptions import ACASessionsError

if TYPE_CHECKING:
    from ._context import ACAContext
    from ._runner import RemoteRunner, RunOutcome

__all__ = ["Job", "Jobs", "SessionBusy", "elapsed_text"]

logger = logging.getLogger("aca_kernel.jobs")
STOP_WAIT = 10.0  # seconds a stop waits for a background cell that is only starting to be sent


class SessionBusy(ACASessionsError):
    """A cell was sent to a session that runs a background cell."""


def elapsed_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass
class Job:
    """One background cell."""

    number: int
    session: str | None
    count: int | None
    code: str
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    status: str = "running"  # running, finished, failed, stopped, lost
    detail: str = ""
    outcome: RunOutcome | None = None
    stop_requested: bool = False
    live: Any = None  # the LiveReader, once the cell started
    widgets: Any = None  # (status line, Output), when shown in a notebook

    @property
    def running(self) -> bool:
        return self.ended is None

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def first_line(self) -> str:
        line = next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")
        return line[:60] + ("…" if len(line) > 60 else "")

    def describe(self) -> str:
        where = f"session {self.session!r}" if self.session else "the default session"
        label = f"In [{self.count}]" if self.count is not None else f"job {self.number}"
        state = {"running": f"running for {elapsed_text(self.elapsed)}",
                 "finished": f"finished in {elapsed_text(self.elapsed)}",
                 "failed": f"failed after {elapsed_text(self.elapsed)}: {self.detail}",
                 "stopped": f"stopped after {elapsed_text(self.elapsed)}",
                 "lost": f"lost after {elapsed_text(self.elapsed)}: {self.detail}"}[self.status]
        return f"[{self.number}] {label} in {where}: {state}"


class Jobs:
    """The background cells of one shell."""

    def __init__(self, context: ACAContext, runner: RemoteRunner) -> None:
        self.context, self.runner = context, runner
        self._jobs: list[Job] = []
        self._lock = threading.Lock()

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs)

    def busy(self, session: str | None) -> Job | None:
        """The background cell running in ``session`` now, if any."""
        return next((j for j in self.all() if j.running and j.session == session), None)

    def check(self, session: str | None) -> None:
        """Refuse a cell for a session that runs a background cell (it would wait behind it)."""
        job = self.busy(session)
        if job is not None:
            where = f" --session {session}" if session else ""
            raise SessionBusy(
                f"The session runs background cell {job.describe()}; this cell would wait behind it. Wait for "
                f"it, stop it with %aca_jobs --stop {job.number}{where}, or run this cell in another session "
                f"(%%aca --session NAME) or here (%%local).")

    def get(self, number: int) -> Job | None:
        return next((j for j in self.all() if j.number == number), None)

    def start(self, code: str, *, session: str | None, count: int | None, show: bool) -> Job:
        with self._lock:
            job = Job(number=len(self._jobs) + 1, session=session, count=count, code=code)
            self._jobs.append(job)
        if show:
            job.widgets = _show(job, self)
        threading.Thread(target=self._follow, args=(job,), name=f"aca-job-{job.number}", daemon=True).start()
        return job

    def stop(self, job: Job) -> bool:
        """Ask the session to interrupt the cell; False when that request could not be made."""
        if not job.running:
            return True
        job.stop_requested = True
        deadline = time.monotonic() + STOP_WAIT
        while job.live is None and job.running and time.monotonic() < deadline:
            time.sleep(0.05)  # stopped as it starts: its thread has not sent the cell yet
        if not job.running:
            return True
        live = job.live
        return live is not None and live.interrupt()

    def _follow(self, job: Job) -> None:
        def deliver(item: dict[str, Any]) -> None:
            _append(job, item)

        def on_live(live: Any) -> None:
            job.live = live

        try:
            outcome = self.runner.run(job.code, session=job.session, count=job.count, detached=True,
                                      on_output=deliver, on_live=on_live, job=True)
        except Exception as exc:  # the client's one-line errors (network, auth, a lost session)
            from .._exceptions import error_message

            job.status, job.detail = "lost", error_message(exc)
        else:
            job.outcome = outcome
            for item in outcome.outputs:
                _append(job, item)
            for notice in outcome.notices:
                _append(job, {"output_type": "stream", "name": "stderr", "text": notice + "\n"})
            if outcome.error is None:
                job.status = "finished"
            elif outcome.error["ename"] == "KeyboardInterrupt" and job.stop_requested:
                job.status = "stopped"
            else:
                job.status, job.detail = "failed", f"{outcome.error['ename']}: {outcome.error['evalue']}"
        finally:
            job.ended = time.monotonic()
            _refresh(job)


def _show(job: Job, jobs: Jobs) -> Any:
    try:
        import ipywidgets
        from IPython.display import display
    except ImportError:
        return None
    status = ipywidgets.HTML(layout=ipywidgets.Layout(width="auto"))
    stop = ipywidgets.Button(description="Stop", icon="stop", layout=ipywidgets.Layout(width="auto"),
                             tooltip="Interrupt the cell in the session (KeyboardInterrupt)")
    out = ipywidgets.Output()

    def on_stop(_: Any) -> None:
        stop.disabled = True
        if not jobs.stop(job):
            status.value += " — the stop request could not be sent"

    stop.on_click(on_stop)
    display(ipywidgets.VBox([ipywidgets.HBox([status, stop]), out]))
    widgets = (status, stop, out)
    job.widgets = widgets
    _refresh(job)
    threading.Thread(target=_tick, args=(job,), name=f"aca-job-{job.number}-clock", daemon=True).start()
    return widgets


def _tick(job: Job) -> None:
    while job.running:
        _refresh(job)
        time.sleep(1.0)


def _refresh(job: Job) -> None:
    if job.widgets is None:
        return
    import html

    status, stop, _ = job.widgets
    status.value = f"<span style='white-space: nowrap'>background cell {html.escape(job.describe())}</span>"
    if not job.running:
        stop.layout.display = "none"


def _append(job: Job, item: dict[str, Any]) -> None:
    """One output into the job's Output widget (or nowhere when it is not shown)."""
    if job.widgets is None:
        return
    out = job.widgets[2]
    kind = item["output_type"]
    if kind == "clear_output":
        out.outputs = ()
        return
    if kind == "update_display_data":  # the Output widget keeps no display ids: show the new version
        item = {**item, "output_type": "display_data"}
    record = {k: v for k, v in item.items() if k != "transient"}
    out.outputs = (*out.outputs, record)
