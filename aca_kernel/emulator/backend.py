"""The local session pool's state: pools, sessions, executions, and the idle sweeper.

Plain Python, no HTTP: ``routes.py`` parses requests into calls on these objects and serialises what they
return. Layout on disk: every session owns ``<data-dir>/sessions/<slug>/`` (the runtime bind-mounts it as
/mnt/data); uploads are written to ``<data-dir>/.staging/`` first and renamed into place when complete, so a
session never shows a partial file. Kernels come from ``kernels.KernelSupply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import errors
from .files import SessionFiles
from .kernels import KernelFactory, KernelLike, KernelSupply, probe_interpreter
from .outcome import ABORTED_MESSAGE

__all__ = ["Backend", "Execution", "PoolSettings", "Session", "SessionPool"]

logger = logging.getLogger("aca_kernel.emulator")

# A session keeps finished executions for GET executions/{id}, up to this many and this many bytes of output;
# older ones are forgotten (a session of notebook cells with images would otherwise hold hundreds of MB).
MAX_EXECUTION_RECORDS = 200
MAX_EXECUTION_BYTES = 16 << 20


@dataclass
class PoolSettings:
    """The pool's limits, from the command line."""

    data_dir: Path
    cooldown: float = 300.0
    max_sessions: int = 100
    ready: int = 2
    timeout: float = 220.0
    python: str = sys.executable
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
        result = self.result
        return len(self.stdout) + len(self.stderr) + (len(result) if isinstance(result, str) else 64)


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
        while len(self.executions) > MAX_EXECUTION_RECORDS:
            self.executions.popitem(last=False)

    def trim(self) -> None:
        """Forget the oldest finished executions beyond MAX_EXECUTION_BYTES of recorded output."""
        total = 0
        for key in reversed(list(self.executions)):
            total += self.executions[key].size
            if total > MAX_EXECUTION_BYTES and self.executions[key].finished:
                del self.executions[key]


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
            await self._backend.destroy(session)

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
        try:
            async with session.lock:
                if session.closed:
                    self._finish(execution, "Failed", stderr=ABORTED_MESSAGE)
                    return
                try:
                    kernel = await self._backend.kernel_for(session)
                except _Aborted:
                    self._finish(execution, "Failed", stderr=ABORTED_MESSAGE)
                    return
                try:
                    outcome = await kernel.execute(code, limit)
                except Exception:
                    if not session.closed:
                        raise
                    # The session was deleted or expired while its code ran: the kernel is gone.
                    self._finish(execution, "Failed", stderr=ABORTED_MESSAGE)
                    return
                self._finish(
                    execution,
                    "Succeeded" if outcome.status == "succeeded" else "Failed",
                    stdout=outcome.stdout,
                    stderr=outcome.stderr,
                    result=outcome.result if outcome.status == "succeeded" else None,
                    ms=outcome.execution_time_ms,
                )
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
            session.trim()

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
                await self._backend.destroy(session)


class Backend:
    """Every pool served by this process, the kernels they share, and the idle sweeper."""

    def __init__(self, settings: PoolSettings, kernel_factory: KernelFactory) -> None:
        self.settings = settings
        self.pools: dict[str, SessionPool] = {}
        self._sessions_dir = settings.data_dir / "sessions"
        # Per process: two pools sharing a --data-dir must not clean up each other's uploads in flight.
        self._staging_dir = settings.data_dir / ".staging" / uuid.uuid4().hex[:12]
        self._kernels = KernelSupply(kernel_factory, settings.ready, self.new_files)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._service_tasks: list[asyncio.Task[Any]] = []
        self._closed = False
        self._metadata: dict[str, Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._sessions_dir.mkdir(parents=True, exist_ok=True)
        self._staging_dir.mkdir(parents=True, exist_ok=True)
        self._kernels.start()
        self._service_tasks = [self.spawn(self._sweeper()), self.spawn(self._kernels.refill_forever())]

    async def close(self) -> None:
        """Stop every session kernel this process started and remove the session directories."""
        if self._closed:
            return
        self._closed = True
        for task in self._service_tasks:
            task.cancel()
        sessions = [s for pool in self.pools.values() for s in pool.sessions.values()]
        for pool in self.pools.values():
            pool.sessions.clear()
        results = await asyncio.gather(*(self.destroy(s) for s in sessions), self._kernels.close(),
                                       return_exceptions=True)
        # Running executions lost their kernels above and now end as "Execution aborted"; their requests
        # get that answer rather than a dropped connection.
        if self._tasks:
            _, stuck = await asyncio.wait(set(self._tasks), timeout=10)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        self._kernels.remove_run_root()
        shutil.rmtree(self._staging_dir, ignore_errors=True)
        for shared in (self._staging_dir.parent, self._sessions_dir):
            with contextlib.suppress(OSError):
                shared.rmdir()  # only when empty: never remove what is not ours
        logger.info("stopped %d session(s) and %s pre-started kernel(s)", len(sessions), results[-1])

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

    # -- sessions and kernels --------------------------------------------------------------------------
    def new_files(self) -> SessionFiles:
        root = self._sessions_dir / uuid.uuid4().hex[:16]
        root.mkdir(parents=True)
        return SessionFiles(root, self._staging_dir)

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
        warm = self._kernels.take()
        if warm is not None:
            # The warm kernel already has /mnt/data bound to its own directory: move the session's files in.
            session.files.move_into(warm.files)
            session.files = warm.files
            session.kernel = warm.kernel
            return warm.kernel
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

    async def destroy(self, session: Session) -> None:
        session.closed = True
        kernel, session.kernel = session.kernel, None
        if kernel is not None:
            try:
                await kernel.shutdown()
            except Exception:
                logger.exception("session %r: kernel shutdown failed", session.identifier)
        session.files.remove()

    # -- idle sweeper ----------------------------------------------------------------------------------
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

    async def metadata(self) -> dict[str, Any]:
        """GET metadata: the session interpreter's runtime and packages (asked once, then cached)."""
        if self._metadata is None:
            self._metadata = await probe_interpreter(self.settings.python)
        return self._metadata
