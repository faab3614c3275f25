"""Find or start this user's local session pool (the emulator), shared by the kernel, ``%%aca`` and the CLI.

One pool per user: its pid, endpoint and token live in ``<jupyter runtime dir>/aca-sessions-pool.json``
(mode 0600; ``ACA_LOCAL_POOL_DIR`` overrides the directory). A file lock makes two kernels starting at the
same moment share one pool. The pool runs detached (its own session) so it outlives the process that started
it; ``aca-sessions pool stop`` ends it. Extra emulator options come from ``ACA_LOCAL_POOL_ARGS``. Started with
``tls=True`` (``aca-sessions pool start --tls``) it serves HTTPS; its CA bundle path is kept in the state file,
and clients of the local pool trust it through ``LocalPool.verify``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["LocalPool", "LocalPoolError", "ensure_local_pool", "is_current", "local_pool_status", "session_count",
           "state_dir", "stop_local_pool"]

logger = logging.getLogger(__name__)

STATE_FILE = "aca-sessions-pool.json"
LOCK_FILE = "aca-sessions-pool.lock"
LOG_FILE = "aca-sessions-pool.log"
OUT_FILE = "aca-sessions-pool.out"  # the emulator's stdout (endpoint and token), removed once read
# A pool-level call that needs no session identifier, so the health check never allocates a session kernel.
_HEALTH_QUERY = "listSessions?api-version=2025-02-02-preview"
# The background pool exits after this long without sessions or requests; the next command starts it again.
IDLE_EXIT_SECONDS = 3600


class LocalPoolError(RuntimeError):
    """The local session pool could not be started or reached; the message says where its log is."""


@dataclass(frozen=True)
class LocalPool:
    endpoint: str
    token: str = field(repr=False)
    pid: int
    started: bool  # True when this call started it, False when an existing pool was reused
    session_id: str | None = None  # the pool's default session, shared by `aca-sessions exec` and `files`
    log_file: str | None = None
    sandboxed: bool = True  # False when bubblewrap was missing and the pool runs sessions with --no-sandbox
    ca_bundle: str | None = None  # the CA of a pool serving HTTPS with its own certificate

    @property
    def verify(self) -> str | bool:
        """The client's ``verify=`` for this pool: its CA bundle, or True (system trust, SSL_CERT_FILE)."""
        return self.ca_bundle or True


def state_dir() -> Path:
    override = os.environ.get("ACA_LOCAL_POOL_DIR")
    if override:
        return Path(override).expanduser()
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


@contextlib.contextmanager
def _locked(directory: Path, timeout: float) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                _lock(fd)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise LocalPoolError(
                        f"timed out waiting for the local pool lock {directory / LOCK_FILE}; "
                        "another process is starting the pool"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":  # pragma: no cover - the local pool's sandbox is Linux-only; keep it importable
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_state(directory: Path) -> dict | None:
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not all(k in state for k in ("pid", "endpoint", "token")):
        return None
    return state


def _write_state(directory: Path, state: dict) -> None:
    path = directory / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file left over from a crash
    os.replace(tmp, path)


def _reap(pid: int) -> None:
    # A pool started by this very process stays a zombie after it exits until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _running(pid: int) -> bool:
    """The process exists and has not exited: a zombie (exited, not yet reaped by a parent that is not us,
    such as the kernel that started the pool) is not running."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone, or someone else's process reusing the pid: not our pool
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _process_exists(pid: int) -> bool:
    if not _running(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"aca_kernel.emulator" in cmdline.read_bytes()
        except OSError:
            return False
    return True


def _list_sessions(endpoint: str, token: str, timeout: float = 10.0, ca_bundle: str | None = None) -> httpx.Response:
    """The pool-level health call, shared by the liveness check and ``session_count``."""
    import httpx

    verify: Any = True
    if ca_bundle:
        import ssl

        verify = ssl.create_default_context(cafile=ca_bundle)
    return httpx.get(endpoint.rstrip("/") + "/" + _HEALTH_QUERY, headers={"Authorization": f"Bearer {token}"},
                     timeout=timeout, verify=verify)


def _answers(endpoint: str, token: str, timeout: float = 10.0, ca_bundle: str | None = None) -> bool:
    import httpx

    try:
        r = _list_sessions(endpoint, token, timeout, ca_bundle)
    except httpx.TimeoutException:
        # Our emulator process is there but slow (busy machine): replacing it would kill the user's sessions.
        logger.warning("the local session pool at %s is slow to answer; reusing it anyway", endpoint)
        return True
    except (httpx.HTTPError, OSError):  # OSError: a CA bundle that is gone
        return False
    # Any answer but an auth failure means a pool that accepts our token is listening there.
    return r.status_code not in (401, 403)


def _alive(state: dict) -> bool:
    return _process_exists(int(state["pid"])) and _answers(state["endpoint"], state["token"],
                                                           ca_bundle=state.get("ca_bundle"))


def _pool_from_state(state: dict, *, started: bool, directory: Path) -> LocalPool:
    return LocalPool(endpoint=state["endpoint"], token=state["token"], pid=int(state["pid"]), started=started,
                     session_id=state.get("session_id"), log_file=str(directory / LOG_FILE),
                     sandboxed=state.get("sandboxed", True), ca_bundle=state.get("ca_bundle"))


def _option(args: list[str], name: str) -> list[str]:
    """Every value given to ``--name`` in ``args`` (``--name V`` and ``--name=V``)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(name + "=")]
    values += [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]
    return values


def _emulator_argv(tls_dir: Path | None = None) -> list[str]:
    extra = shlex.split(os.environ.get("ACA_LOCAL_POOL_ARGS", ""))
    if any(a == "--token" or a.startswith("--token=") for a in extra):
        raise LocalPoolError("ACA_LOCAL_POOL_ARGS must not set --token: the local pool makes its own")
    public = [h for h in _option(extra, "--host") if not _loopback(h)]
    if public:
        # The background pool's endpoint is only ever announced as loopback; a public bind would expose every
        # session to the network while nothing the user reads says so.
        raise LocalPoolError(
            f"ACA_LOCAL_POOL_ARGS must not bind the background pool to {public[0]}: it runs your code for anyone "
            f"who reaches it. Run `aca-sessions emulator --host {public[0]}` in the foreground to share a pool"
        )
    # No --token: any local user can read a command line (ps). The emulator makes a random token and prints
    # it on its stdout, which only this user can read (see _start). No --data-dir: the emulator's own temporary
    # folder keeps the session files out of the user's home, whose path a session could otherwise read in
    # /proc/self/mountinfo. ACA_LOCAL_POOL_ARGS comes last: it wins.
    argv = [sys.executable, "-m", "aca_kernel.emulator", "--host", "127.0.0.1", "--port", "0",
            "--idle-exit", str(IDLE_EXIT_SECONDS), *extra]
    if tls_dir is not None and "--tls" not in extra:
        # its CA lives with the pool's state, so a restarted pool keeps the bundle its users already trust
        argv += ["--tls", "--tls-dir", str(tls_dir)]
    if shutil.which("bwrap") is None and "--no-sandbox" not in extra:
        logger.warning("bubblewrap (bwrap) is not installed: the local pool runs sessions without a sandbox")
        argv.append("--no-sandbox")
    return argv


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _start(directory: Path, timeout: float, tls: bool = False) -> dict:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = directory / LOG_FILE
    out_path = directory / OUT_FILE
    env = {k: v for k, v in os.environ.items() if k not in ("ACA_POOL_MANAGEMENT_ENDPOINT", "ACA_TOKEN")}
    env["PYTHONUNBUFFERED"] = "1"  # the announcement lines must reach the file at once
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Files, not pipes: the pool outlives us and must never write into a closed pipe.
        argv = _emulator_argv(directory / "tls" if tls else None)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=log_fd,
                                env=env, cwd=directory, start_new_session=True)
    finally:
        os.close(log_fd)
        os.close(out_fd)
    try:
        deadline = time.monotonic() + timeout
        while (announced := _read_announcement(out_path)) is None:
            if proc.poll() is not None:
                raise LocalPoolError(f"the local session pool exited with code {proc.returncode} during start-up; "
                                     f"see {log_path}")
            if time.monotonic() > deadline:
                raise LocalPoolError(f"the local session pool did not start within {timeout:.0f} s; see {log_path}")
            time.sleep(0.05)
    except BaseException:
        # Whatever stopped the wait (a timeout, Ctrl-C in the first cell): a pool that no state file records
        # would run on where `aca-sessions pool stop` cannot see it, next to the one the next call starts.
        _stop_quickly(proc)
        raise
    finally:
        # The token lives on only in the 0600 state file; the pool keeps writing to the unlinked file, if at all.
        with contextlib.suppress(FileNotFoundError):
            out_path.unlink()
    endpoint, token, ca_bundle = announced
    # Reap the pool when it exits while this process lives on (a kernel that started it): an unreaped pool
    # would stay a zombie that looks alive to `aca-sessions pool stop`. The thread also keeps the Popen
    # referenced, so it never warns about a child still running.
    threading.Thread(target=proc.wait, name="aca-pool-reaper", daemon=True).start()
    state = {"pid": proc.pid, "endpoint": endpoint, "token": token, "session_id": str(uuid.uuid4()),
             "started_at": time.time(), "log_file": str(log_path), "sandboxed": "--no-sandbox" not in argv,
             "ca_bundle": ca_bundle}
    _write_state(directory, state)
    logger.info("started the local session pool at %s (pid %d)", endpoint, proc.pid)
    return state


def _read_announcement(path: Path) -> tuple[str, str, str | None] | None:
    """(endpoint, token, CA bundle or None) once the emulator has printed its lines, else None.

    The CA bundle line (HTTPS with a generated CA) comes between the other two, so it is there by the token's.
    """
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(": ")
                if sep and key in ("pool endpoint", "ca bundle", "token") and line.endswith("\n"):
                    values[key] = value.strip()
    except OSError:
        return None
    if "pool endpoint" in values and "token" in values:
        return values["pool endpoint"], values["token"], values.get("ca bundle")
    return None


def ensure_local_pool(*, timeout: float = 60, tls: bool = False) -> LocalPool:
    """Reuse this user's running local pool, or start one; ``.started`` says which happened.

    ``tls=True`` starts it serving HTTPS (and refuses to reuse a running plain-HTTP pool).
    """
    directory = state_dir()
    with _locked(directory, timeout):
        state = _read_state(directory)
        if state is not None:
            if _alive(state):
                if tls and not str(state["endpoint"]).startswith("https:"):
                    raise LocalPoolError(f"the local session pool is already running over HTTP at "
                                         f"{state['endpoint']}; stop it with `aca-sessions pool stop`, then start "
                                         f"it again with --tls")
                return _pool_from_state(state, started=False, directory=directory)
            logger.info("the local session pool recorded in %s is gone; starting a new one", directory / STATE_FILE)
            if _process_exists(int(state["pid"])):
                _terminate(int(state["pid"]))  # running but not answering: do not leave it behind
            with contextlib.suppress(FileNotFoundError):
                (directory / STATE_FILE).unlink()
        state = _start(directory, timeout, tls)
        return _pool_from_state(state, started=True, directory=directory)


def is_current(pool: LocalPool) -> bool:
    """``pool`` is still this user's running local pool (no network call: the state file and the process).

    False once it was stopped (``aca-sessions pool stop``), exited (``--idle-exit``), crashed, or was replaced
    by a pool that another command started."""
    state = _read_state(state_dir())
    return (state is not None and int(state["pid"]) == pool.pid and state["endpoint"] == pool.endpoint
            and _process_exists(pool.pid))


def local_pool_status() -> LocalPool | None:
    """The running local pool, or None; never starts one."""
    directory = state_dir()
    state = _read_state(directory)
    if state is None or not _alive(state):
        return None
    return _pool_from_state(state, started=False, directory=directory)


def session_count(pool: LocalPool) -> int | None:
    """How many sessions the pool holds, or None if it cannot tell."""
    import httpx

    try:
        return int(_list_sessions(pool.endpoint, pool.token, ca_bundle=pool.ca_bundle).json()["count"])
    except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError):
        return None


def _stop_quickly(proc: subprocess.Popen) -> None:
    """End a pool that is still starting, and everything it started, without waiting long (Ctrl-C was pressed).

    SIGTERM lets it remove its folders; a pool that has not yet installed its handlers dies of it at once and
    leaves them to the next pool's reclaim."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: session kernels it started go with it
    with contextlib.suppress(subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.wait(timeout=5)


def _terminate(pid: int, timeout: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.1)
    # The pool leads its own process group (start_new_session): take its session kernels with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def stop_local_pool(*, timeout: float = 20.0) -> bool:
    """Stop this user's local pool; True if one was running."""
    directory = state_dir()
    with _locked(directory, timeout + 10):
        state = _read_state(directory)
        if state is None:
            return False
        pid = int(state["pid"])
        running = _process_exists(pid)
        if running:
            _terminate(pid, timeout)
        with contextlib.suppress(FileNotFoundError):
            (directory / STATE_FILE).unlink()
        return running
