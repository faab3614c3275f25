"""Per-shell state shared by the kernel, ``%%aca`` and the file magics: settings, named sessions, local pool.

``get_context(shell)`` returns the one :class:`ACAContext` of an IPython shell. Clients are created lazily, so
neither loading the extension nor starting the kernel touches the network or starts the local pool; the
first remote call does. With no endpoint configured the context uses this user's local session pool
(``aca_kernel._localpool``) and says so once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float, Int, Unicode, default
from traitlets.config import Configurable

if TYPE_CHECKING:
    from .._client import SessionsClient
    from ._replay import ReplayCell

__all__ = ["ACAContext", "ACASettings", "SessionState", "get_context"]

logger = logging.getLogger("aca_kernel.context")

LOCAL_POOL_NOTE = (
    "running on the local session pool — set ACA_POOL_MANAGEMENT_ENDPOINT to use Azure"
)
UNSANDBOXED_NOTE = " (its sessions are NOT sandboxed: install bubblewrap to isolate them)"
REPLACED_NOTE = ("the local session pool was stopped or restarted; now using the one at {endpoint} "
                 "(the sessions of the old pool are gone)")
# The service's execution limit; interrupt messages quote it.
EXECUTION_LIMIT_S = 220


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _env_float(name: str, fallback: float) -> float:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return fallback


def parse_bool(text: str) -> bool | None:
    """``true/yes/on/1`` or ``false/no/off/0`` (any case); None for anything else."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _env_bool(name: str, fallback: bool) -> bool:
    value = parse_bool(os.environ.get(name, ""))
    return fallback if value is None else value


class ACASettings(Configurable):
    """Settings of the ``%%aca`` magic and the kernel. Each defaults to its ``ACA_`` environment variable.

    Set them with ``%aca_config name=value``, ``%config ACASettings.name = value`` or, in the kernel, the
    matching ``c.ACAKernel.<name>`` option.
    """

    endpoint = Unicode(None, allow_none=True, config=True,
                       help="Pool management endpoint; unset means the local session pool. $ACA_POOL_MANAGEMENT_ENDPOINT")
    api_version = Unicode(None, allow_none=True, config=True, help="Data-plane API version. $ACA_API_VERSION")
    token_scope = Unicode(None, allow_none=True, config=True, help="Entra token scope. $ACA_TOKEN_SCOPE")
    session_id = Unicode(None, allow_none=True, config=True,
                         help="Identifier of the default session (else a fresh uuid4). $ACA_SESSION_ID")
    timeout = Float(None, allow_none=True, config=True,
                    help="Seconds one cell may run (default: the service limit, 220 s; the HTTP read waits a margin "
                         "longer). $ACA_TIMEOUT")
    rich = Bool(True, config=True, help="Rich mode: full MIME bundles, in order. $ACA_RICH")
    max_output_bytes = Int(5_000_000, config=True,
                           help="Outputs of one cell beyond this size are cut with a notice. $ACA_MAX_OUTPUT_BYTES")
    progress_after = Float(2.0, config=True,
                           help="Seconds before a running cell shows its elapsed time. $ACA_PROGRESS_AFTER")
    keepalive = Float(0.0, config=True,
                      help="Touch used sessions every N seconds so they outlive the cooldown (0 = off; "
                           "an allocated session is billed while kept alive). $ACA_KEEPALIVE")
    cooldown = Float(300.0, config=True,
                     help="The pool's cooldownPeriod in seconds, for expiry estimates on older API versions. "
                          "$ACA_COOLDOWN")
    detach = Bool(False, config=True,
                  help="Run every remote cell detached: no execution time limit (the service's is 220 s); outputs "
                       "stream in and the stop button works as usual. $ACA_DETACH")
    complete_timeout = Float(3.0, config=True,
                             help="Seconds a completion or inspection request may take. $ACA_COMPLETE_TIMEOUT")
    housekeeping_timeout = Float(10.0, config=True,
                                 help="Seconds a front end's own request (VS Code's variables and data viewer, "
                                      "store_history=False or silent) may take in the session before it is answered "
                                      "empty. $ACA_HOUSEKEEPING_TIMEOUT")

    @default("endpoint")
    def _default_endpoint(self) -> str | None:
        return _env("ACA_POOL_MANAGEMENT_ENDPOINT")

    @default("api_version")
    def _default_api_version(self) -> str | None:
        return _env("ACA_API_VERSION")

    @default("token_scope")
    def _default_token_scope(self) -> str | None:
        return _env("ACA_TOKEN_SCOPE")

    @default("session_id")
    def _default_session_id(self) -> str | None:
        return _env("ACA_SESSION_ID")

    @default("timeout")
    def _default_timeout(self) -> float | None:
        value = _env_float("ACA_TIMEOUT", 0.0)
        return value or None

    @default("rich")
    def _default_rich(self) -> bool:
        return _env_bool("ACA_RICH", True)

    @default("max_output_bytes")
    def _default_max_output_bytes(self) -> int:
        return int(_env_float("ACA_MAX_OUTPUT_BYTES", 5_000_000))

    @default("progress_after")
    def _default_progress_after(self) -> float:
        return _env_float("ACA_PROGRESS_AFTER", 2.0)

    @default("keepalive")
    def _default_keepalive(self) -> float:
        return _env_float("ACA_KEEPALIVE", 0.0)

    @default("cooldown")
    def _default_cooldown(self) -> float:
        return _env_float("ACA_COOLDOWN", 300.0)

    @default("detach")
    def _default_detach(self) -> bool:
        return _env_bool("ACA_DETACH", False)

    @default("complete_timeout")
    def _default_complete_timeout(self) -> float:
        return _env_float("ACA_COMPLETE_TIMEOUT", 3.0)

    @default("housekeeping_timeout")
    def _default_housekeeping_timeout(self) -> float:
        return _env_float("ACA_HOUSEKEEPING_TIMEOUT", 10.0)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in sorted(self.class_own_traits(config=True))}


@dataclass
class SessionState:
    """Bookkeeping for one remote session identifier (the default one or a ``--session NAME``)."""

    client: SessionsClient
    name: str | None
    first_call: float | None = None  # time.time() of the first call that reached the service
    last_call: float | None = None
    runtime_ready: bool = False  # the session runtime was installed there (as far as this client knows)
    lost_pending: bool = False  # a completion found the runtime gone: the next cell says so
    count: int = 0  # the highest prompt number run there (cells without one get the next)
    python_version: str | None = None  # the session's Python, reported by the runtime
    live_ok: bool | None = None  # the pool serves file calls while a cell runs (live output, interrupts); None: unknown
    live_noted: bool = False  # the user was told that it does not
    history: list[ReplayCell] = field(default_factory=list)  # cells that built the remote state
    replay: list[ReplayCell] = field(default_factory=list)  # the history of a session found to have lost it
    files_kept: bool = False  # that session kept its /mnt/data (only its Python state was lost)
    pool_replaced: bool = False  # its local pool was stopped or restarted: a lost state is explained by that
    # what %aca_pip installed (aca_kernel.notebook._pip.PackageRecord), so a recycled session can get it back
    packages: list[Any] = field(default_factory=list)

    def touch(self) -> None:
        now = time.time()
        if self.first_call is None:
            self.first_call = now
        self.last_call = now

    def reset(self) -> None:
        self.first_call = self.last_call = None
        self.runtime_ready = self.lost_pending = self.pool_replaced = False
        self.count = 0
        self.history.clear()
        self.replay.clear()
        self.packages.clear()

    def reinstall_packages(self, shell: Any = None) -> Any:
        """Install again what ``%aca_pip`` installed here (after the session was recycled); None if nothing.

        Wheels come from the cache on this machine (downloaded again if it was cleared), only what the
        session lacks is uploaded, and the one table of ``%aca_pip`` is displayed (and returned).
        """
        if not self.packages:
            return None
        from ._pip import reinstall

        return reinstall(shell, self)


class ACAContext:
    """The per-shell state: settings, the default and named sessions, the local-pool fallback."""

    def __init__(self, shell: Any = None, settings: ACASettings | None = None) -> None:
        self.shell = shell
        self.settings = settings or ACASettings(parent=shell)
        self._sessions: dict[Any, SessionState] = {}
        self._lock = threading.RLock()
        self.transport: Any = None  # an httpx transport for every client (the client's test seam)
        self.local_pool: Any = None  # the LocalPool once started/found
        self.local_note_pending = False  # the "running on the local pool" note is due on the next output
        self.jobs: Any = None  # the shell's background cells (notebook._jobs.Jobs), once %%aca made it
        self._replaced_note: str | None = None  # said instead when the local pool was replaced under us
        self._keepalive_stop = threading.Event()
        self._keepalive_thread: threading.Thread | None = None
        # A new endpoint, version or scope applies to the next call, however it was set (%config too).
        self.settings.observe(lambda _change: self.settings_changed(),
                              names=["endpoint", "api_version", "token_scope"])
        self.settings.observe(lambda _change: self._ensure_keepalive(), names=["keepalive"])

    # --- sessions ----------------------------------------------------------------------------------
    @property
    def colors(self) -> str | None:
        """The local IPython's colour scheme, which the session's tracebacks and pager follow."""
        colors = getattr(self.shell, "colors", None)
        return colors if isinstance(colors, str) else None

    @property
    def uses_local_pool(self) -> bool:
        return not self.settings.endpoint

    @property
    def local_pool_note(self) -> str:
        """The one-time note for the local pool, with a warning when its sessions run unsandboxed."""
        unsandboxed = self.local_pool is not None and not getattr(self.local_pool, "sandboxed", True)
        note = self._replaced_note or LOCAL_POOL_NOTE
        return note + (UNSANDBOXED_NOTE if unsandboxed else "")

    def _follow_local_pool(self) -> None:
        """Point the clients at the user's current local pool when the one they use was stopped, exited or
        replaced (no network call: the pool's state file and process); it is started again if none runs."""
        old = self.local_pool
        if old is None or self.settings.endpoint:
            return
        from .._localpool import ensure_local_pool, is_current

        if is_current(old):
            return
        new = self.local_pool = ensure_local_pool()
        logger.info("the local session pool at %s is gone; now using %s", old.endpoint, new.endpoint)
        from .._client import SessionsClient

        for state in self._sessions.values():
            c = state.client
            if c.endpoint.rstrip("/") != old.endpoint.rstrip("/"):
                continue  # a session on an explicit endpoint (%%aca --endpoint)
            state.client = SessionsClient(new.endpoint, new.token, api_version=c.api_version, session_id=c.session_id,
                                          token_scope=self.settings.token_scope, transport=self.transport)
            state.pool_replaced = True
            c.close()
        self._replaced_note = REPLACED_NOTE.format(endpoint=new.endpoint)
        self.local_note_pending = True

    def _endpoint_and_credential(self) -> tuple[str, str | None]:
        if self.settings.endpoint:
            return self.settings.endpoint, None
        if self.local_pool is None:
            from .._localpool import ensure_local_pool

            self.local_pool = ensure_local_pool()
            self.local_note_pending = True
        return self.local_pool.endpoint, self.local_pool.token

    def session(self, name: str | None = None, *, endpoint: str | None = None,
                api_version: str | None = None) -> SessionState:
        """The state of the default (``None``) or a named session, creating its client on first use.

        ``endpoint``/``api_version`` (``%%aca --endpoint/--api-version``) select a separate session of that
        name on that endpoint or version.
        """
        key: Any = name if endpoint is None and api_version is None else (name, endpoint, api_version)
        with self._lock:
            if endpoint is None:
                self._follow_local_pool()
            state = self._sessions.get(key)
            if state is None:
                from .._client import SessionsClient

                if endpoint is not None:
                    credential = None
                else:
                    endpoint, credential = self._endpoint_and_credential()
                session_id = self.settings.session_id if key is None else None
                # A local pool serving HTTPS with its own CA is trusted through its bundle.
                verify = self.local_pool.verify if credential is not None and self.local_pool else True
                client = SessionsClient(endpoint, credential, api_version=api_version or self.settings.api_version,
                                        session_id=session_id or str(uuid.uuid4()),
                                        token_scope=self.settings.token_scope, transport=self.transport,
                                        verify=verify)
                state = SessionState(client=client, name=name)
                self._sessions[key] = state
                self._ensure_keepalive()
            return state

    def client(self, name: str | None = None) -> SessionsClient:
        """The client of the default or a named session (lazily created; the local pool if no endpoint)."""
        return self.session(name).client

    def existing(self, name: str | None = None) -> SessionState | None:
        return self._sessions.get(name)

    def session_names(self) -> list[str | None]:
        return [k for k in self._sessions if not isinstance(k, tuple)]

    def new_session(self, name: str | None = None, session_id: str | None = None, *, delete_old: bool = True) -> str:
        """Move a session to a fresh identifier (or ``session_id``: attach to an existing one)."""
        state = self.session(name)
        if delete_old and state.first_call is not None:
            self._delete_remote(state)
        new_id = state.client.new_session(session_id)
        state.reset()
        return new_id

    def _delete_remote(self, state: SessionState) -> None:
        from .._config import SESSION_API_VERSIONS

        if state.client.api_version not in SESSION_API_VERSIONS:
            return  # nothing to call: the old session ends after the pool's cooldown
        try:
            state.client.delete_session()
        except Exception as exc:  # best effort: a session we cannot delete still expires after the cooldown
            logger.warning("could not delete session %s: %s", state.client.session_id, exc)

    def forget(self, name: str) -> None:
        with self._lock:
            state = self._sessions.pop(name, None)
        if state is not None:
            if state.first_call is not None:
                self._delete_remote(state)
            state.client.close()

    def settings_changed(self) -> None:
        """Endpoint-level settings changed: the next call builds new clients (same identifiers are not kept)."""
        with self._lock:
            for state in self._sessions.values():
                state.client.close()
            self._sessions.clear()
        self._ensure_keepalive()

    # --- descriptions --------------------------------------------------------------------------------
    def describe(self, name: str | None = None) -> str:
        """One line: session id, endpoint, api version (no network call, no local-pool start)."""
        from .._config import public_endpoint  # user-info and query strings may hold secrets

        state = self._sessions.get(name)
        label = f"session {name!r}" if name else "default session"
        if state is None:
            where = (public_endpoint(self.settings.endpoint) if self.settings.endpoint
                     else "the local session pool (starts with the first remote cell)")
            ident = f"identifier {self.settings.session_id} " if name is None and self.settings.session_id else ""
            return f"{label}: {ident}not started yet; endpoint {where}"
        c = state.client
        pool = " (local session pool)" if self.uses_local_pool else ""
        return f"{label}: identifier {c.session_id} on {public_endpoint(c.endpoint)}{pool}, api-version {c.api_version}"

    # --- keep-alive ----------------------------------------------------------------------------------
    def _ensure_keepalive(self) -> None:
        if self.settings.keepalive <= 0 or (self._keepalive_thread and self._keepalive_thread.is_alive()):
            return
        self._keepalive_stop.clear()
        self._keepalive_thread = threading.Thread(target=self._keepalive_loop, name="aca-keepalive", daemon=True)
        self._keepalive_thread.start()

    def _keepalive_loop(self) -> None:
        while not self._keepalive_stop.wait(max(self.settings.keepalive, 1.0)):
            if self.settings.keepalive <= 0:
                return
            for state in list(self._sessions.values()):
                if state.first_call is None:
                    continue  # never touch (and so allocate) a session the user has not used
                try:
                    # Any call resets the idle timer; listing files is the cheapest that runs no code.
                    state.client.list_files()
                    state.touch()
                except Exception as exc:
                    logger.info("keep-alive of %s failed: %s", state.client.session_id, exc)

    def close(self, *, delete_sessions: bool = False) -> None:
        self._keepalive_stop.set()
        with self._lock:
            states = list(self._sessions.values())
            self._sessions.clear()
        for state in states:
            if delete_sessions and state.first_call is not None:
                self._delete_remote(state)
            state.client.close()


def get_context(shell: Any) -> ACAContext:
    """The :class:`ACAContext` of ``shell`` (created on first use)."""
    ctx = getattr(shell, "_aca_context", None)
    if ctx is None:
        ctx = ACAContext(shell)
        shell._aca_context = ctx
        configurables = getattr(shell, "configurables", None)
        if configurables is not None and ctx.settings not in configurables:
            configurables.append(ctx.settings)
    return ctx
