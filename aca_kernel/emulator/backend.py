"""The local session pool's state: pools, sessions, executions, and the idle sweeper.

Plain Python, no HTTP: ``routes.py`` parses requests into calls on these objects and serialises what they
return. Layout on disk (``instance.py``): every session owns ``<data-dir>/sessions/<instance>-<slug>/`` (the
runtime bind-mounts it as /mnt/data); uploads are written to ``<data-dir>/.staging/<instance>/`` first and
renamed into place when complete, so a session never shows a partial file. Kernels come from
``kernels.KernelSupply``.

Capacity: ``--max-sessions`` per pool name, ``--max-total-sessions`` for the whole process, and the sessions the
open-file limit leaves room for (``limits.DescriptorBudget``); a new identifier past any of them is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import errors
from .files import SessionFiles
from .instance import Instance, reclaim
from .kernels import KernelFactory, KernelLike, KernelSupply, probe_interpreter
from .limits import FDS_PER_KERNEL, DescriptorBudget
from .outcome import ABORTED_MESSAGE

__all__ = ["Backend", "Execution", "PoolSettings", "Session", "SessionPool"]

logger = logging.getLogger("aca_kernel.emulator")

# A session keeps this many finished executions for GET executions/{id}; older ones are forgotten, and so are
# old ones beyond MAX_RECORD_CHARS of output in all (a big result is not kept alive 200 times over).
MAX_EXECUTION_RECORDS = 200
MAX_RECORD_CHARS = 32 << 20


@dataclass
class PoolSettings:
    """The pool's limits, from the command line."""

    data_dir: Path
    cooldown: float = 300.0
    max_sessions: int = 100
    ready: int = 2
    timeout: float = 220.0
    python: str = sys.executable
    max_total_sessions: int | None = None  # for the whole process, all pool names together
    idle_exit: float | None = None  # seconds without sessions and requests after which the process exits
    own_data_dir: bool = False  # data_dir is a temporary directory of this process alone
    serialize_files: bool = False  # file calls of a session wait while it runs code


@dataclass
class Execution:
    """One code execution, as GET executions/{id} reports it."""

    id: str
    identifier: str
    execution_type: str  # "Synchronous" | "Asynchronous"
    status: str = "Running"  # "Running" | "Succeeded" | "Failed"
    stdout: str = ""
    stderr: str = ""
    result: Any = None
    execution_time_ms: int | None = None
    output_limit: int | None = None  # stdout and stderr are cut to this many characters; None: never cut

    @property
    def finished(self) -> bool:
        return self.status != "Running"

    @property
    def size(self) -> int:
        """Characters of output this record keeps (roughly what it costs in memory)."""
        result = self.result
        if isinstance(result, dict):
            result = result.get("base64_data", "")
        return len(self.stdout) + len(self.stderr) + (len(result) if isinstance(result, str) else 0)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Session:
    """One identifier's session: its files, its kernel (started on first execute) and its executions."""

    identifier: str
    files: SessionFiles
    cooldown: float
    etag: str = field(default_factory=lambda: str(uuid.uuid4()))
    kernel: KernelLike | None = None
    created_at: datetime = field(default_factory=_utcnow)
    last_accessed_at: datetime = field(default_factory=_utcnow)
    _last_access_mono: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    busy: int = 0
    closed: bool = False
    closed_reason: str = "the session was deleted while the code ran"
    executions: OrderedDict[str, Execution] = field(default_factory=OrderedDict)

    def touch(self) -> None:
        """Every call resets the idle clock [DOC session-pool.md]."""
        self.last_accessed_at = _utcnow()
        self._last_access_mono = time.monotonic()

    @property
    def expire_at(self) -> datetime:
        return self.last_accessed_at + timedelta(seconds=self.cooldown)

    def idle_for(self, now: float) -> float:
        return now - self._last_access_mono

    def remember(self, execution: Execution) -> None:
        self.executions[execution.id] = execution
        self.trim_records()

    def trim_records(self) -> None:
        """Forget the oldest finished executions past the count and output budgets (never the newest)."""
        total = sum(e.size for e in self.executions.values())
        while len(self.executions) > 1 and (len(self.executions) > MAX_EXECUTION_RECORDS or total > MAX_RECORD_CHARS):
            oldest = next(iter(self.executions.values()))
            if not oldest.finished:
                break
            self.executions.popitem(last=False)
            total -= oldest.size


class _Aborted(Exception):
    """The session went away while its kernel was starting."""


class SessionPool:
    """One named pool: its sessions by identifier, limited to ``max_sessions`` at a time."""

    def __init__(self, name: str, backend: Backend) -> None:
        self.name = name
        self.created_at = _utcnow()
        self._backend = backend
        self.sessions: dict[str, Session] = {}

    def session(self, identifier: str) -> Session:
        """The session for ``identifier``, created on first use of the identifier [DOC]."""
        session = self.sessions.get(identifier)
        if session is None:
            settings = self._backend.settings
            if len(self.sessions) >= settings.max_sessions:
                raise errors.SessionLimitReached(
                    f"The session pool has reached its limit of {settings.max_sessions} live sessions; "
                    "delete an idle session or start the local pool with a larger --max-sessions."
                )
            self._backend.admit()
            session = Session(identifier, self._backend.new_files(), settings.cooldown)
            self.sessions[identifier] = session
            logger.info("pool %s: new session %r (%s)", self.name, identifier, session.files.root.name)
        session.touch()
        return session

    async def delete_session(self, identifier: str) -> None:
        """DELETE session: destroy it now. An unknown identifier is not an error (nothing to delete)."""
        session = self.sessions.pop(identifier, None)
        if session is not None:
            logger.info("pool %s: session %r deleted", self.name, identifier)
            await self._backend.destroy(session, "the session was deleted while the code ran")

    async def execute(self, session: Session, code: str, *, timeout: float | None, asynchronous: bool,
                      operation_id: str | None, output_limit: int | None = None, keep: bool = True) -> Execution:
        """Run ``code``; synchronous calls return the finished execution, asynchronous ones return it running.

        Executions in one session run one at a time. The pool's --timeout is the limit; a lower
        ``timeoutInSeconds`` from the request is honoured. With ``output_limit``, the recorded stdout and
        stderr keep only their first ``output_limit`` characters (the value is never cut).
        """
        limit = self._backend.settings.timeout
        if timeout is not None:
            limit = min(limit, timeout)
        execution = Execution(
            id=operation_id or str(uuid.uuid4()),
            identifier=session.identifier,
            execution_type="Asynchronous" if asynchronous else "Synchronous",
            output_limit=output_limit,
        )
        if keep:
            session.remember(execution)
        session.busy += 1
        task = self._backend.spawn(self._run(session, execution, code, limit))
        if not asynchronous:
            # Shielded: a client that hangs up must not cancel code that is already running in the kernel.
            await asyncio.shield(task)
        return execution

    async def _run(self, session: Session, execution: Execution, code: str, limit: float) -> None:
        aborted = f"{ABORTED_MESSAGE}: {{}}."
        try:
            async with session.lock:
                if session.closed:
                    self._finish(execution, "Failed", stderr=aborted.format(session.closed_reason))
                    return
                try:
                    kernel = await self._backend.kernel_for(session)
                except (_Aborted, asyncio.CancelledError) as exc:
                    if isinstance(exc, asyncio.CancelledError) and not session.closed:
                        raise
                    # _Aborted also comes from a pool that started stopping before it closed this session
                    reason = session.closed_reason if session.closed else "the local session pool is stopping"
                    self._finish(execution, "Failed", stderr=aborted.format(reason))
                    return
                try:
                    outcome = await kernel.execute(code, limit)
                except (Exception, asyncio.CancelledError):
                    if not session.closed:
                        raise
                    # The session was deleted or expired while its code ran: the kernel is gone.
                    self._finish(execution, "Failed", stderr=aborted.format(session.closed_reason))
                    return
                stderr = outcome.stderr
                if outcome.kernel_died and session.closed:
                    stderr = aborted.format(session.closed_reason)
                self._finish(
                    execution,
                    "Succeeded" if outcome.status == "succeeded" else "Failed",
                    stdout=outcome.stdout,
                    stderr=stderr,
                    result=outcome.result if outcome.status == "succeeded" else None,
                    ms=outcome.execution_time_ms,
                )
                session.trim_records()
                if outcome.kernel_died and not session.closed:
                    # Out of memory (or killed): the next call gets a fresh kernel; /mnt/data is kept.
                    logger.warning("pool %s: session %r kernel died; it restarts empty on the next call",
                                   self.name, session.identifier)
                    session.kernel = None
                    await kernel.shutdown()
        except errors.ServiceError as exc:
            self._finish(execution, "Failed", stderr=exc.message)
            raise
        except Exception as exc:
            logger.exception("pool %s: execution %s failed inside the emulator", self.name, execution.id)
            self._finish(execution, "Failed", stderr=f"The local session pool failed to run the code: {exc}")
            raise errors.InternalError(
                f"The local session pool could not run the code: {exc}. See the pool's log for details."
            ) from exc
        finally:
            session.busy -= 1
            session.touch()
            session.trim_records()  # now that its output is known

    @staticmethod
    def _finish(execution: Execution, status: str, *, stdout: str = "", stderr: str = "",
                result: Any = None, ms: int | None = 0) -> None:
        limit = execution.output_limit
        if limit is not None:
            stdout, stderr = stdout[:limit], stderr[:limit]
        execution.stdout, execution.stderr, execution.result = stdout, stderr, result
        execution.execution_time_ms = ms
        execution.status = status

    def execution(self, session: Session, execution_id: str) -> Execution:
        found = session.executions.get(execution_id)
        if found is None:
            raise errors.ExecutionNotFound(
                f"Session {session.identifier!r} has no execution with id {execution_id!r}.",
                target="executionId",
            )
        return found

    async def metadata(self) -> dict[str, Any]:
        """GET metadata: every pool runs the same interpreter."""
        return await self._backend.metadata()

    async def expire(self, now: float) -> None:
        """Destroy sessions idle for longer than the cooldown; a busy session is never idle."""
        for identifier, session in list(self.sessions.items()):
            if session.busy == 0 and session.idle_for(now) > session.cooldown:
                if self.sessions.get(identifier) is session:
                    del self.sessions[identifier]
                logger.info("pool %s: session %r expired after %.0f s idle", self.name, identifier,
                            session.cooldown)
                await self._backend.destroy(session, "the session expired")


class Backend:
    """Every pool served by this process, the kernels they share, its capacity and its background tasks."""

    def __init__(self, settings: PoolSettings, kernel_factory: KernelFactory) -> None:
        self.settings = settings
        self.pools: dict[str, SessionPool] = {}
        self.instance = Instance(settings.data_dir, own_data_dir=settings.own_data_dir)
        self._kernels = KernelSupply(kernel_factory, settings.ready, self.new_files)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._service_tasks: list[asyncio.Task[Any]] = []
        self._closed = False
        self._metadata: dict[str, Any] | None = None
        self.budget: DescriptorBudget | None = None
        self.last_request = time.monotonic()
        # what --idle-exit calls; the CLI's default asks uvicorn for a clean stop
        self.on_idle: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTERM)

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.instance.claim()
        assert self.instance.run_root is not None
        # What pools killed before they could clean up left behind (their kernels, folders): in the background.
        self.spawn(asyncio.to_thread(reclaim, self.settings.data_dir))
        self.budget = DescriptorBudget.measure()
        if self.session_capacity < self.settings.max_sessions:
            logger.info("the open-file limit (%d) leaves room for %d live sessions", self.budget.limit,
                        self.session_capacity)
        self._kernels.start(self.instance.run_root)
        self._service_tasks = [self.spawn(self._sweeper()), self.spawn(self._kernels.refill_forever())]
        if self.settings.idle_exit:
            self._service_tasks.append(self.spawn(self._idle_watch(self.settings.idle_exit)))

    async def close(self) -> None:
        """Stop every session kernel this process started and remove everything it kept on disk."""
        if self._closed:
            return
        self._closed = True
        for task in self._service_tasks:
            task.cancel()
        sessions = [s for pool in self.pools.values() for s in pool.sessions.values()]
        for pool in self.pools.values():
            pool.sessions.clear()
        results = await asyncio.gather(*(self.destroy(s, "the local session pool is stopping") for s in sessions),
                                       self._kernels.close(), return_exceptions=True)
        # Running executions lost their kernels above and now end as "Execution aborted"; their requests
        # get that answer rather than a dropped connection.
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=10)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        # Whatever a request racing the stop created is removed with the rest.
        await asyncio.to_thread(self.instance.release)
        logger.info("stopped %d session(s) and %s pre-started kernel(s)", len(sessions), results[-1])

    @property
    def closing(self) -> bool:
        return self._closed

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, errors.ServiceError):
                logger.error("background task failed: %s", exc, exc_info=exc)

    def pool(self, name: str) -> SessionPool:
        found = self.pools.get(name)
        if found is None:
            found = self.pools[name] = SessionPool(name, self)
        return found

    # -- capacity --------------------------------------------------------------------------------------
    @property
    def live_sessions(self) -> int:
        return sum(len(pool.sessions) for pool in self.pools.values())

    @property
    def session_capacity(self) -> int:
        """Live sessions the open-file limit leaves room for (pre-started kernels take their share first)."""
        if self.budget is None:
            return self.settings.max_sessions
        return max(0, self.budget.kernels - self.settings.ready)

    def admit(self) -> None:
        """Refuse a new session when the process is stopping or at one of its whole-process limits."""
        if self._closed:
            raise errors.ShuttingDown("The local session pool is stopping; start it again to create sessions.")
        total = self.settings.max_total_sessions
        live = self.live_sessions
        if total is not None and live >= total:
            raise errors.SessionLimitReached(
                f"The local session pool holds its limit of {total} live sessions across all pool names "
                "(--max-total-sessions); delete an idle session or raise the limit."
            )
        if live >= self.session_capacity:
            assert self.budget is not None
            raise errors.SessionLimitReached(
                f"The local session pool has no room for another session: its open-file limit ({self.budget.limit}"
                f", ulimit -n) leaves room for {self.session_capacity} live sessions at about {FDS_PER_KERNEL} "
                "descriptors each. Delete an idle session, or raise the limit and restart the pool."
            )

    # -- sessions and kernels --------------------------------------------------------------------------
    def new_files(self) -> SessionFiles:
        if self._closed:
            raise errors.ShuttingDown("The local session pool is stopping; start it again to create sessions.")
        return SessionFiles(self.instance.new_session_dir(), self.instance.staging_dir, self.instance.trash_dir)

    async def kernel_for(self, session: Session) -> KernelLike:
        """The session's live kernel: a pre-started one if available, else one started now."""
        kernel = session.kernel
        if kernel is not None and kernel.alive:
            return kernel
        if kernel is not None:
            logger.warning("session %r: kernel had died; starting a new one (state is lost, files are kept)",
                           session.identifier)
            session.kernel = None
            await kernel.shutdown()
        if self._closed:
            raise _Aborted
        warm = self._kernels.take()
        if warm is not None:
            # The warm kernel already has /mnt/data bound to its own directory: move the session's files in.
            session.files.move_into(warm.files)
            session.files = warm.files
            session.kernel = warm.kernel
            return warm.kernel
        if self.budget is not None and not self.budget.room_for_kernel():
            raise errors.ServiceUnavailable(
                f"The local session pool is short of file descriptors (open-file limit {self.budget.limit}) "
                "and cannot start this session's Python kernel now; retry when other sessions have ended."
            )
        kernel = session.kernel = self._kernels.new_kernel(session.files)
        try:
            await kernel.start()
        except Exception as exc:
            session.kernel = None
            with contextlib.suppress(Exception):
                await kernel.shutdown()
            if session.closed:
                raise _Aborted from None
            raise errors.InternalError(f"The session's Python kernel could not start: {exc}") from exc
        if session.closed:
            # Deleted, expired or shut down while the kernel started: it must not outlive the session.
            await kernel.shutdown()
            raise _Aborted
        return kernel

    async def destroy(self, session: Session, reason: str) -> None:
        """End ``session``: its kernel is stopped (a running execution ends as "Execution aborted: <reason>")
        and its files removed."""
        session.closed = True
        session.closed_reason = reason
        kernel, session.kernel = session.kernel, None
        if kernel is not None:
            try:
                await kernel.shutdown()
            except Exception:
                logger.exception("session %r: kernel shutdown failed", session.identifier)
        await asyncio.to_thread(session.files.remove)

    # -- background ------------------------------------------------------------------------------------
    async def _sweeper(self) -> None:
        interval = max(0.2, min(5.0, self.settings.cooldown / 4))
        while not self._closed:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for pool in list(self.pools.values()):
                try:
                    await pool.expire(now)
                except Exception:
                    logger.exception("idle sweep of pool %s failed", pool.name)

    async def _idle_watch(self, idle_exit: float) -> None:
        """--idle-exit: stop the process once it has held no session and answered no request for a while."""
        interval = max(0.2, min(30.0, idle_exit / 4))
        idle_since = time.monotonic()
        while not self._closed:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if self.live_sessions or any(s.busy for p in self.pools.values() for s in p.sessions.values()):
                idle_since = now
                continue
            quiet = now - max(idle_since, self.last_request)
            if quiet >= idle_exit:
                logger.info("no sessions and no requests for %.0f s (--idle-exit): stopping", quiet)
                self.on_idle()
                return

    async def metadata(self) -> dict[str, Any]:
        """GET metadata: the session interpreter's runtime and packages (asked once, then cached)."""
        if self._metadata is None:
            self._metadata = await probe_interpreter(self.settings.python)
        return self._metadata
