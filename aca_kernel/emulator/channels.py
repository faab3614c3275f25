"""A session kernel's shell and iopub channels, kept usable when a message over the size limit is dropped.

Every socket of the pool refuses messages over ``limits.MAX_MESSAGE_BYTES`` (ZMQ_MAXMSGSIZE): libzmq drops such
a message before buffering it, which is what bounds the pool's memory whatever a session's code sends. It then
drops the connection too, and after that protocol error it never reconnects. So a dropped message leaves its
channel dead, and the execution's end marker (iopub's idle status, or the shell's execute_reply) may be lost
with it. This module notices that and connects fresh sockets.
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


class Channels:
    """The shell and iopub channels of one kernel client, with a watch on the shell connection."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self._monitor: Any = None
        self._watch_shell()

    def _watch_shell(self) -> None:
        self._monitor = self.kc.shell_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def _unwatch_shell(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            with contextlib.suppress(Exception):
                self.kc.shell_channel.socket.disable_monitor()
            monitor.close(linger=0)

    async def shell_lost(self) -> bool:
        """True once the shell connection was dropped (a reply over the limit, or garbage from the kernel)."""
        if self._monitor is None:
            return False
        try:
            return bool(await self._monitor.poll(0))
        except zmq.ZMQError:
            return False

    def reconnect_iopub(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.iopub_channel.stop()
        self.kc._iopub_channel = None
        self.kc.iopub_channel.start()

    def reconnect_shell(self) -> None:
        self._unwatch_shell()
        with contextlib.suppress(Exception):
            self.kc.shell_channel.stop()
        self.kc._shell_channel = None
        self.kc.shell_channel.start()
        self._watch_shell()

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
        self._unwatch_shell()
