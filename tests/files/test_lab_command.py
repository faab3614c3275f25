"""`aca-sessions lab` lifts Jupyter Server's 10 MiB websocket message limit, so big comm messages arrive."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from aca_kernel.cli import LAB_WEBSOCKET_MAX_BYTES, lab_server_args


def test_the_limit_is_added_unless_the_user_sets_tornado_settings() -> None:
    args = lab_server_args(["--no-browser"])
    assert args[0] == "--no-browser"
    assert json.loads(args[1].split("=", 1)[1]) == {"websocket_max_message_size": LAB_WEBSOCKET_MAX_BYTES}
    assert LAB_WEBSOCKET_MAX_BYTES > 128 * 1024 * 1024
    mine = ['--ServerApp.tornado_settings={"websocket_max_message_size": 1}']
    assert lab_server_args(mine) == mine


def _message(msg_type: str, content: dict, channel: str = "shell") -> dict:
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "t", "session": "s",
                       "date": "2026-01-01T00:00:00Z", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel}


async def _big_message_then_kernel_info(url: str) -> str:
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(url, max_message_size=64 * 1024 * 1024)
    try:
        big = _message("comm_msg", {"comm_id": "nobody", "data": {"blob": "x" * (12 * 1024 * 1024)}})
        await ws.write_message(json.dumps(big))  # over Tornado's default 10 MiB: the server would hang up
        info = _message("kernel_info_request", {})
        await ws.write_message(json.dumps(info))
        while True:
            raw = await asyncio.wait_for(ws.read_message(), 60)
            if raw is None:
                return f"closed ({ws.close_code})"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") == info["header"]["msg_id"] and \
                    msg["header"]["msg_type"] == "kernel_info_reply":
                return "reply"
    finally:
        ws.close()


@pytest.mark.slow
def test_lab_accepts_a_message_over_10_mib(pool, tmp_path: Path) -> None:
    import httpx
    from conftest import wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, ACA_POOL_MANAGEMENT_ENDPOINT=pool.endpoint, ACA_TOKEN=pool.token or "",
               ACA_LOCAL_POOL_DIR=str(tmp_path / "state"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aca_kernel", "lab", "--no-browser", f"--port={port}",
                             "--ServerApp.token=t", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/api/status", params={"token": "t"}, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(up, timeout=90, interval=0.5), (tmp_path / "lab.log").read_text()[-3000:]
        kernel = httpx.post(f"{base}/api/kernels", params={"token": "t"}, json={"name": "python3"}, timeout=60).json()
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels?token=t"
        assert asyncio.run(_big_message_then_kernel_info(url)) == "reply"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
