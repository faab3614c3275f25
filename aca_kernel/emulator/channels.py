"""A session kernel's shell and iopub channels, kept usable when a message over the size limit is dropped.

Every socket of the pool refuses messages over ``limits.MAX_MESSAGE_BYTES`` (ZMQ_MAXMSGSIZE): libzmq drops such
a message before buffering it, which is what bounds the pool's memory whatever a session's code sends. It then
drops the connection too, and after that protocol error it never reconnects. So a dropped message leaves its
channel dead, and the execution's end marker (iopub's idle status, or the shell's execute_reply) may be lost
with it. A monitor on each socket says when that happens; this module then connects a fresh socket.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from typing import Any

import zmq

__all__ = ["Channels"]

logger = logging.getLogger("aca_kernel.emulator.runtime")

_NAMES = ("shell", "iopub")


class Channels:
    """The shell and iopub channels of one kernel client, each watched for a dropped connection."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self._monitors: dict[str, Any] = {}
        for name in _NAMES:
            self._watch(name)

    def _channel(self, name: str) -> Any:
        return getattr(self.kc, f"{name}_channel")

    def _watch(self, name: str) -> None:
        self._monitors[name] = self._channel(name).socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def _unwatch(self, name: str) -> None:
        monitor = self._monitors.pop(name, None)
        if monitor is not None:
            with contextlib.suppress(Exception):
                self._channel(name).socket.disable_monitor()
            monitor.close(linger=0)

    async def lost(self, name: str) -> bool:
        """True once the connection of channel ``name`` was dropped (a message over the limit, or garbage)."""
        monitor = self._monitors.get(name)
        if monitor is None:
            return False
        try:
            return bool(await monitor.poll(0))
        except zmq.ZMQError:
            return False

    def reconnect(self, name: str) -> None:
        """A fresh socket (and monitor) for channel ``name``."""
        self._unwatch(name)
        with contextlib.suppress(Exception):
            self._channel(name).stop()
        setattr(self.kc, f"_{name}_channel", None)
        self._channel(name).start()
        self._watch(name)

    async def reply_for(self, msg_id: str) -> dict[str, Any] | None:
        """The content of the reply to ``msg_id`` if it has arrived (other replies are dropped)."""
        while True:
            try:
                msg = await self.kc.get_shell_msg(timeout=0)
            except queue.Empty:
                return None
            except Exception:
                logger.debug("skipping a shell message that cannot be read", exc_info=True)
                continue
            parent = msg.get("parent_header")
            if isinstance(parent, dict) and parent.get("msg_id") == msg_id:
                content = msg.get("content")
                return content if isinstance(content, dict) else {}

    async def wait_reply(self, msg_id: str, seconds: float) -> dict[str, Any] | None:
        """The reply to ``msg_id`` if it comes within ``seconds`` and the shell connection holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not await self.lost("shell"):
            try:
                msg = await self.kc.get_shell_msg(timeout=0.05)
            except queue.Empty:
                continue
            except Exception:
                continue
            parent = msg.get("parent_header")
            if isinstance(parent, dict) and parent.get("msg_id") == msg_id:
                content = msg.get("content")
                return content if isinstance(content, dict) else {}
        return None

    async def wait_until_free(self, km: Any, deadline: float, poll: float = 0.25) -> bool:
        """Ask for kernel_info on a fresh shell: the kernel answers once the running execution is over. False if
        no answer came before ``deadline`` or the kernel died."""
        msg_id = self.kc.kernel_info()
        while time.monotonic() < deadline:
            try:
                msg = await self.kc.get_shell_msg(timeout=poll)
            except queue.Empty:
                if not await km.is_alive():
                    return False
                continue
            except Exception:
                continue
            parent = msg.get("parent_header")
            if isinstance(parent, dict) and parent.get("msg_id") == msg_id:
                return True
        return False

    def close(self) -> None:
        for name in _NAMES:
            self._unwatch(name)
