"""Driving a kernel through jupyter_client: run a cell, collect its iopub messages and reply."""

from __future__ import annotations

import queue
from typing import Any

OUTPUT_TYPES = ("stream", "display_data", "update_display_data", "execute_result", "error", "clear_output")


def collect(kc: Any, msg_id: str, timeout: float = 60) -> list[dict]:
    """Iopub messages of one request up to its idle status."""
    msgs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs
        msgs.append(msg)


def run(kc: Any, code: str, timeout: float = 60, **kwargs: Any) -> tuple[dict, list[dict]]:
    """(execute_reply content, output messages) of one cell."""
    msg_id = kc.execute(code, **kwargs)
    reply = None
    while reply is None:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            reply = msg
    outputs = [m for m in collect(kc, msg_id, timeout) if m["msg_type"] in OUTPUT_TYPES]
    return reply["content"], outputs


def text(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == name)


def drain(kc: Any) -> None:
    for get in (kc.get_iopub_msg, kc.get_shell_msg):
        while True:
            try:
                get(timeout=0.2)
            except queue.Empty:
                break
