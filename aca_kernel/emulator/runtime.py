"""One IPython kernel per session, started in a bubblewrap sandbox and driven through jupyter_client.

``SessionKernel.execute`` turns one execute_request into an ``ExecOutcome`` (``outcome.py`` reads the messages);
a timeout interrupts the kernel and an OOM kill aborts the cell.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import queue
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec
from traitlets import List, Unicode

from .channels import Channels
from .limits import MAX_MESSAGE_BYTES, human_size
from .outcome import ABORTED_MESSAGE, DROPPED_NOTE, TIMEOUT_MESSAGE, Collector, ExecOutcome
from .sandbox import (
    SANDBOX_SETUP_FILE,
    MemoryCgroup,
    SandboxConfig,
    bwrap_argv,
    check_sandbox,
    parse_memory,
    rlimit_prefix,
    via_args_file,
)

__all__ = ["ABORTED_MESSAGE", "TIMEOUT_MESSAGE", "ExecOutcome", "SandboxConfig", "SessionKernel", "check_sandbox"]

logger = logging.getLogger("aca_kernel.emulator.runtime")

SETUP_FILE = Path(__file__).with_name("_kernel_setup.py")
# sun_path holds 107 bytes; jupyter_client appends "-<n>" to the ipc base name
_MAX_IPC_DIR = 90

# strong references: a kernel object dropped without shutdown() must still be killed at exit
_live: set[SessionKernel] = set()
_context: zmq.asyncio.Context | None = None
SEND_TIMEOUT_MS = 1000


def _zmq_context() -> zmq.asyncio.Context:
    """One ZMQ context for every kernel of the process, never terminated while the process runs.

    jupyter_client otherwise makes a context (an I/O thread and its descriptors) per kernel and client and
    destroys it at shutdown; that destroy waits for every socket of the context to close, which is how one
    failed start ("Too many open files") used to hang the whole pool.
    """
    global _context
    if _context is None:
        ctx = zmq.asyncio.Context()
        ctx.max_sockets = 1 << 16  # the default, 1023, would cap a pool at ~250 kernels
        ctx.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        ctx.setsockopt(zmq.LINGER, 0)
        # jupyter_client sends synchronously, and a socket whose connection is gone would block the send, and
        # with it the pool's event loop, for ever: a send that cannot leave in this time raises zmq.Again.
        ctx.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        _context = ctx
    return _context


class _SessionKernelManager(AsyncKernelManager):
    """A kernel manager whose command line is given whole (the sandbox wraps the interpreter)."""

    command = List(Unicode())

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return [*self.command, *(extra_arguments or [])]


class SessionKernel:
    """The kernel of one session; ``data_dir`` is its /mnt/data, ``run_dir`` holds its sockets and log."""

    start_timeout: float = float(os.environ.get("ACA_KERNEL_START_TIMEOUT", "60"))
    # after a timeout's interrupt, how long the cell gets to unwind before the kernel is restarted
    interrupt_grace: float = 5.0
    poll_interval: float = 0.25
    # after the execute_reply, how long iopub may stay silent before its final idle is taken as lost: short
    # once iopub's connection is known to have dropped, long when nothing said so (a fallback)
    lost_grace: float = 1.0
    reply_grace: float = 10.0

    def __init__(self, data_dir: Path, run_dir: Path, config: SandboxConfig) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.run_dir = Path(run_dir).absolute()
        self.config = config
        self._memory = parse_memory(config.memory) if config.memory else None
        self._km: _SessionKernelManager | None = None
        self._kc: Any = None
        self._channels: Channels | None = None
        self._cgroup: MemoryCgroup | None = None
        self._ipc_dir: Path | None = None
        self._own_ipc_dir = False
        self._closed = False
        self.memory_mode = "none"
        """How memory is limited for this kernel: "cgroup v1", "cgroup v2", "rlimit" or "none"."""

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<SessionKernel {self.data_dir} {state} sandbox={self.config.enabled}>"

    @property
    def alive(self) -> bool:
        process = getattr(self._km.provisioner, "process", None) if self._km is not None else None
        return process is not None and process.poll() is None

    @property
    def log_file(self) -> Path:
        return self.run_dir / "kernel.log"

    # --- start / stop ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the kernel and wait until it answers kernel_info; RuntimeError (with the log tail) otherwise."""
        if self._closed:
            raise RuntimeError("this session kernel was shut down; create a new SessionKernel")
        if self._km is not None:
            await self._teardown()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._ipc_dir = self._make_ipc_dir()
        cmd, env, cwd = self._command()
        km = _SessionKernelManager(
            transport="ipc", ip=str(self._ipc_dir / "k"), connection_file=str(self._ipc_dir / "kernel.json"),
            context=_zmq_context(),
        )
        km.command = cmd
        # message mode: signal mode does killpg(SIGINT), which kills the outer bwrap and with it the sandbox
        km._kernel_spec = KernelSpec(
            argv=[], language="python", display_name="aca session", interrupt_mode="message"
        )
        self._km = km
        _live.add(self)
        started = time.monotonic()
        with open(self.log_file, "ab") as log:
            try:
                await km.start_kernel(stdout=log, stderr=log, env=env, cwd=cwd)
            except Exception as exc:
                await self._teardown()
                raise RuntimeError(f"session kernel could not be launched: {exc}") from exc
        kc = km.client(context=_zmq_context())
        # No heartbeat (a thread and a socket per kernel; liveness is the process's), no stdin, no control.
        kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        self._kc = kc
        self._channels = Channels(kc)
        try:
            await kc.wait_for_ready(timeout=self.start_timeout)
        except (RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
            tail = self._log_tail()
            await self._teardown()
            raise RuntimeError(f"session kernel did not start ({exc}); kernel log:\n{tail}") from None
        logger.info("session kernel ready in %.0f ms (%s, memory: %s)",
                    (time.monotonic() - started) * 1000, "sandboxed" if self.config.enabled else "no sandbox",
                    self.memory_mode)

    def _make_ipc_dir(self) -> Path:
        ipc = self.run_dir / "ipc"
        if len(str(ipc)) <= _MAX_IPC_DIR:
            ipc.mkdir(exist_ok=True)
            self._own_ipc_dir = False
            return ipc
        # /tmp, not $TMPDIR: it must be short
        self._own_ipc_dir = True
        return Path(tempfile.mkdtemp(prefix="aca-", dir="/tmp"))

    def _command(self) -> tuple[list[str], dict[str, str], str]:
        assert self._ipc_dir is not None
        python = self.config.python
        conn = str(self._ipc_dir / "kernel.json")
        prefix: list[str] = []
        limit: list[str] = []
        self.memory_mode = "none"
        if self._memory is not None:
            self._cgroup = MemoryCgroup.create(self._memory)
            if self._cgroup is not None:
                prefix = self._cgroup.launch_prefix()
                self.memory_mode = self._cgroup.mode
            else:
                limit = rlimit_prefix(self._memory)
                self.memory_mode = "rlimit" if limit else "none"
        kernel_args = [
            "-m", "ipykernel_launcher", "-f", conn,
            "--InteractiveShell.colors=nocolor",
            "--HistoryManager.hist_file=:memory:",
        ]
        if self.config.enabled:
            sandbox = bwrap_argv(python=python, data_dir=self.data_dir, ipc_dir=self._ipc_dir,
                                 setup_file=SETUP_FILE)
            kernel_args.append(f"--IPKernelApp.exec_files=['{SANDBOX_SETUP_FILE}']")
            sandbox = via_args_file(sandbox, self.run_dir / "bwrap.args")
            cmd = [*prefix, *sandbox, *limit, python, *kernel_args]
            # bwrap itself needs nothing from our environment, and the kernel gets --clearenv
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            return cmd, env, str(self.run_dir)
        kernel_args.append(f"--IPKernelApp.exec_files=['{SETUP_FILE}']")
        cmd = [*prefix, *limit, python, *kernel_args]
        # only harmless variables: the pool's own environment may hold tokens
        env = {k: os.environ[k] for k in ("PATH", "HOME", "USER", "LOGNAME", "TZ", "TMPDIR") if k in os.environ}
        env.update(LANG="C.UTF-8", IPYTHONDIR=str(self.run_dir / "ipython"))
        return cmd, env, str(self.data_dir)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no kernel log)"
        return "\n".join(text.splitlines()[-lines:]) or "(kernel log is empty)"

    async def shutdown(self) -> None:
        """Kill the kernel and everything it started, free its cgroup and remove its run files."""
        self._closed = True
        await self._teardown()
        for path in (self.log_file, self.run_dir / "bwrap.args", self.run_dir / "ipc", self.run_dir / "ipython"):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()

    async def _teardown(self) -> None:
        # kill first, while the launcher is not yet reaped: its PID (our process group id) cannot be reused
        self._kill_sync()
        km, kc = self._km, self._kc
        self._km = self._kc = None
        if self._channels is not None:
            self._channels.close()
            self._channels = None
        if kc is not None:
            with contextlib.suppress(Exception):
                kc.stop_channels()
        if km is not None:
            try:
                if km.has_kernel:
                    # reaps the launcher and removes the connection file and sockets
                    await km.shutdown_kernel(now=True)
                else:
                    km.cleanup_resources()
            except Exception:
                logger.debug("kernel shutdown raised", exc_info=True)
        if self._cgroup is not None:
            for _ in range(100):
                if self._cgroup.remove():
                    break
                self._cgroup.kill()
                await asyncio.sleep(0.02)
            else:
                logger.warning("could not remove memory cgroup %s", self._cgroup.path)
            self._cgroup = None
        if self._own_ipc_dir and self._ipc_dir is not None:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
        _live.discard(self)

    def _kill_sync(self) -> None:
        """Kill the kernel's process group (sandbox: bwrap; its PID namespace takes the rest) and cgroup.

        Synchronous, so it also serves at interpreter exit.
        """
        process = getattr(self._km.provisioner, "process", None) if self._km is not None else None
        if process is not None and process.returncode is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._cgroup is not None:
            # also catches children that left the process group (setsid) when there is no sandbox
            self._cgroup.kill()

    # --- execute ---------------------------------------------------------------------------------------------

    async def execute(self, code: str, timeout: float) -> ExecOutcome:
        """Run ``code``; never raises for anything the code does (errors, timeout, OOM are outcomes)."""
        if self._closed:
            raise RuntimeError("this session kernel was shut down")
        if not self.alive:
            # the previous kernel died (OOM): the session continues in a fresh one, its state lost
            logger.info("starting a fresh kernel for %s", self.data_dir)
            await self.start()
        km, kc, channels = self._km, self._kc, self._channels
        assert km is not None and kc is not None and channels is not None
        for name in ("shell", "iopub"):
            if await channels.lost(name):  # dropped after the last execution ended: the request must get through
                channels.reconnect(name)
        await _drain(kc)
        started = time.monotonic()
        try:
            msg_id = kc.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        except zmq.Again:
            # The shell's connection is gone without a report: the request never left, so sending it on a fresh
            # socket cannot run the code twice.
            logger.warning("the shell connection of %s was gone; reconnecting", self.data_dir)
            channels.reconnect("shell")
            msg_id = kc.execute(code, silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        collector = Collector()
        deadline = started + max(float(timeout), 0.0)
        interrupted_at: float | None = None
        reply: dict[str, Any] | None = None
        quiet_since = started  # when iopub last delivered a message
        dropped = shell_lost = iopub_lost = False
        while not collector.idle:
            if self._km is not km:
                # shutdown() ran while the code was running (session deleted or expired)
                return self._died(collector, started)
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                interrupted_at = now
                with contextlib.suppress(Exception):
                    await km.interrupt_kernel()
            if interrupted_at is not None and now >= interrupted_at + self.interrupt_grace:
                logger.warning("kernel did not return from an interrupt; restarting it (state is lost)")
                await self._restart_quietly()
                break
            if reply is None:
                reply = await channels.reply_for(msg_id)
            if not shell_lost and await channels.lost("shell"):
                shell_lost = dropped = True
            if not iopub_lost and await channels.lost("iopub"):
                # A message over the size limit took iopub's connection with it: a fresh one gets what
                # follows (often the idle that ends the execution).
                iopub_lost = dropped = True
                channels.reconnect("iopub")
                quiet_since = now
            # Once the execution is over (its reply came, or was lost) iopub's idle may never come: its
            # message was lost with the connection (seen above), or unseen (a long silence, the fallback).
            grace = self.lost_grace if iopub_lost else self.reply_grace
            if now - quiet_since >= grace and (reply is not None or shell_lost):
                if not iopub_lost:
                    channels.reconnect("iopub")
                dropped = True
                if reply is None:
                    # Neither end marker can come now: the kernel answers kernel_info once it is free.
                    channels.reconnect("shell")
                    shell_lost = False
                    if not await channels.wait_until_free(km, deadline):
                        quiet_since = time.monotonic()
                        continue  # past the deadline (interrupted next round) or dead (seen next round)
                break
            wait = self.poll_interval
            if interrupted_at is None:
                wait = min(wait, max(deadline - now, 0.001))
            try:
                msg = await kc.get_iopub_msg(timeout=wait)
            except queue.Empty:
                if not await km.is_alive():
                    return self._died(collector, started)
                continue
            except asyncio.CancelledError:
                # stop_channels() in shutdown() cancels the pending read; a cancelled caller must still see it
                task = asyncio.current_task()
                cancelled = task is not None and getattr(task, "cancelling", lambda: 0)() > 0
                if self._km is not km and not cancelled:
                    return self._died(collector, started)
                raise
            except Exception:
                if self._km is not km:
                    return self._died(collector, started)
                # code in the kernel holds the session key and can send a signed message that does not parse
                logger.debug("skipping an iopub message that cannot be read", exc_info=True)
                continue
            quiet_since = time.monotonic()
            parent = msg.get("parent_header")
            if isinstance(parent, dict) and parent.get("msg_id") == msg_id:
                collector.add(msg)
        if dropped and reply is None and not shell_lost and interrupted_at is None and self._km is km:
            # iopub's idle (on a fresh socket) may come before the reply that says how the code ended
            reply = await channels.wait_reply(msg_id, self.lost_grace)
        if (shell_lost or (dropped and reply is None)) and self._km is km:
            # The reply was lost (or may be, its drop not yet reported), while iopub's idle ended the execution:
            # a fresh shell socket is safe either way, and the next request must not go into a dead one.
            channels.reconnect("shell")
        elapsed = int((time.monotonic() - started) * 1000)
        if interrupted_at is not None:
            return ExecOutcome("failed", collector.stdout(), TIMEOUT_MESSAGE, None, elapsed, timed_out=True)
        if dropped:
            logger.warning("a message from the kernel of %s was over %d bytes and was dropped", self.data_dir,
                           MAX_MESSAGE_BYTES)
            return collector.outcome_without_idle(elapsed, reply, DROPPED_NOTE)
        return collector.outcome(elapsed)

    def _died(self, collector: Collector, started: float) -> ExecOutcome:
        reason = ""
        if self._closed:
            logger.info("session kernel shut down during an execution")
        else:
            oom = self._cgroup is not None and self._cgroup.oom_killed()
            logger.warning("session kernel died during execution%s; kernel log:\n%s",
                           " (out of memory)" if oom else "", self._log_tail(5))
            reason = self._death_reason(oom)
        elapsed = int((time.monotonic() - started) * 1000)
        return ExecOutcome("failed", collector.stdout(), ABORTED_MESSAGE + reason, None, elapsed, kernel_died=True)

    def _death_reason(self, oom: bool) -> str:
        """Why the kernel process is gone, as the tail of "Execution aborted"."""
        lost = "; variables and imports are lost, files in /mnt/data are kept"
        if oom and self._memory is not None:
            return (f": the session ran out of memory (its limit is {human_size(self._memory)}) and its Python process "
                    f"was stopped{lost}.")
        process = getattr(self._km.provisioner, "process", None) if self._km is not None else None
        code = process.poll() if process is not None else None
        if code is None:
            how = "stopped"
        elif code < 0 or code > 128:
            number = -code if code < 0 else code - 128
            try:
                how = f"was killed by {signal.Signals(number).name}"
            except ValueError:
                how = f"exited with status {code}"
        else:
            how = f"exited with status {code}"
        return f": the session's Python process {how}{lost}."

    async def _restart_quietly(self) -> None:
        try:
            await self.start()
        except RuntimeError:
            logger.exception("could not restart the session kernel")


async def _drain(kc: Any) -> None:
    """Drop leftovers of earlier executions (late iopub after an interrupt, unread execute_replies)."""
    for get in (kc.get_iopub_msg, kc.get_shell_msg):
        # Empty ends the drain; so does a message that cannot be read (what is left is filtered by msg_id)
        with contextlib.suppress(Exception):
            while True:
                await get(timeout=0)


@atexit.register
def _kill_leftovers() -> None:
    kernels = list(_live)
    for kernel in kernels:
        kernel._kill_sync()
        if kernel._own_ipc_dir and kernel._ipc_dir is not None:
            shutil.rmtree(kernel._ipc_dir, ignore_errors=True)
    for kernel in kernels:
        cgroup = kernel._cgroup
        for _ in range(50):
            if cgroup is None or cgroup.remove():
                break
            cgroup.kill()
            time.sleep(0.02)
