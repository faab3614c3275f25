"""`aca-sessions mcp` as an agent host runs it: a subprocess driven by the MCP SDK's own client over stdio.

The server talks to the shared pool (``$ACA_POOL_MANAGEMENT_ENDPOINT``), to an endpoint that is down or wrong,
and, with no endpoint, to a local pool it starts itself.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LIVE

import aca_kernel

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

V2 = "2025-10-02-preview"
PNG = b"\x89PNG\r\n\x1a\n"
TOOLS = {"execute_python", "upload_file", "download_file", "list_files", "delete_file", "new_session"}


@contextlib.asynccontextmanager
async def server(env: dict[str, str], *args: str, cwd: Path) -> AsyncIterator[ClientSession]:
    """``aca-sessions mcp`` as a child process, with only ``env`` (plus PATH/HOME) as its environment."""
    keep = {k: os.environ[k] for k in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                                       "MPLCONFIGDIR") if k in os.environ}
    params = StdioServerParameters(command=sys.executable, args=["-m", "aca_kernel", "mcp", *args],
                                   env={**keep, **env}, cwd=str(cwd))
    with open(cwd / "server-stderr.txt", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def call(client: ClientSession, tool: str, **arguments: Any) -> Any:
    return await client.call_tool(tool, arguments)


@pytest.fixture
def pool_env(pool) -> dict[str, str]:
    return {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "", "ACA_API_VERSION": V2}


async def test_an_agent_session(pool, pool_env, tmp_path):
    local = tmp_path / "work"
    local.mkdir()
    (local / "input.csv").write_text("a,b\n1,2\n3,4\n")
    async with server(pool_env, cwd=local) as s:
        listed = {tool.name: tool for tool in (await s.list_tools()).tools}
        assert set(listed) == TOOLS
        for tool in listed.values():
            assert len(tool.description or "") > 40, tool.name  # written for a model
            assert tool.input_schema["type"] == "object"
            for name, prop in tool.input_schema["properties"].items():
                assert prop.get("description"), (tool.name, name)
        assert listed["execute_python"].input_schema["required"] == ["code"]

        # State across calls; stdout, stderr and the value come back as labelled text.
        first = await call(s, "execute_python", code="import sys\nx = 40\nprint('hello')\n"
                                                      "print('careful', file=sys.stderr)\nx + 2")
        assert not first.is_error
        assert text_of(first) == "[stdout]\nhello\n[stderr]\ncareful\n[result]\n42"
        assert text_of(await call(s, "execute_python", code="x * 2")) == "[result]\n80"
        # Model-written code in a Markdown fence runs (sanitize_input is on in the server).
        fenced = await call(s, "execute_python", code="```python\n    y = x + 1\n    y\n```")
        assert text_of(fenced) == "[result]\n41"

        # A figure is image content, the same rich capture as the kernel (displays in order, then the value).
        plot = await call(s, "execute_python", code=(
            "import matplotlib.pyplot as plt\nfrom IPython.display import Markdown, display\n"
            "display(Markdown('**before**'))\nplt.plot([1, 3, 2])\nplt.show()\n'after'"))
        assert not plot.is_error, text_of(plot)
        kinds = [block.type for block in plot.content]
        assert kinds == ["text", "image", "text"], kinds
        assert plot.content[0].text == "[display]\n**before**" and plot.content[2].text == "[result]\n'after'"
        assert plot.content[1].mime_type == "image/png"
        assert base64.b64decode(plot.content[1].data).startswith(PNG)

        # A failing cell is a tool error with the traceback, without terminal colours.
        failed = await call(s, "execute_python", code="print('partial')\n1 / 0")
        assert failed.is_error
        message = text_of(failed)
        assert message.startswith("[stdout]\npartial\n[error]\nZeroDivisionError: division by zero\n")
        assert "Traceback" in message and "\x1b[" not in message
        assert text_of(await call(s, "execute_python", code="x")) == "[result]\n40"  # the session survived

        # Files: upload three ways, list, download (inline and to a local path), delete.
        up = await call(s, "upload_file", remote_path="in/input.csv", local_path="input.csv")
        assert text_of(up) == "Uploaded to /mnt/data/in/input.csv (12 bytes)."
        await call(s, "upload_file", remote_path="notes.txt", content_text="héllo\n")
        await call(s, "upload_file", remote_path="/mnt/data/raw.bin",
                   content_base64=base64.b64encode(bytes(range(256))).decode())
        read = await call(s, "execute_python",
                          code="import pandas as pd\nint(pd.read_csv('/mnt/data/in/input.csv')['b'].sum())")
        assert text_of(read) == "[result]\n6"
        listing = text_of(await call(s, "list_files", recursive=True))
        assert listing.splitlines()[0] == "4 entries in /mnt/data (path, size, last modified):"
        assert [line.split("\t")[:2] for line in listing.splitlines()[1:]] == [
            ["in/", "directory"], ["in/input.csv", "12 bytes"], ["notes.txt", "7 bytes"], ["raw.bin", "256 bytes"]]
        assert text_of(await call(s, "download_file", remote_path="notes.txt")) == "héllo\n"
        binary = await call(s, "download_file", remote_path="raw.bin")
        assert binary.is_error and "binary file (256 bytes); pass local_path" in text_of(binary)
        saved = await call(s, "download_file", remote_path="raw.bin", local_path="back/raw.bin")
        assert not saved.is_error, text_of(saved)
        assert (local / "back" / "raw.bin").read_bytes() == bytes(range(256))
        await call(s, "execute_python", code="plt.figure(); plt.plot([0, 1]); plt.savefig('/mnt/data/p.png')")
        image = await call(s, "download_file", remote_path="p.png")
        assert [b.type for b in image.content] == ["text", "image"]
        assert base64.b64decode(image.content[1].data).startswith(PNG)
        outside = await call(s, "download_file", remote_path="notes.txt", local_path=str(tmp_path / "x.txt"))
        assert outside.is_error and "outside" in text_of(outside) and not (tmp_path / "x.txt").exists()
        assert text_of(await call(s, "delete_file", remote_path="notes.txt")) == "Deleted /mnt/data/notes.txt."
        missing = await call(s, "download_file", remote_path="notes.txt")
        assert missing.is_error and text_of(missing).startswith("File 'notes.txt' not found in session")

        # Named sessions are separate sandboxes.
        await call(s, "execute_python", code="x = 'other'", session="side")
        assert text_of(await call(s, "execute_python", code="x", session="side")) == "[result]\n'other'"
        assert text_of(await call(s, "execute_python", code="x")) == "[result]\n40"
        bad = await call(s, "execute_python", code="1", session="no spaces")
        assert bad.is_error and text_of(bad).startswith("Invalid session name 'no spaces'")

        # new_session: a fresh identifier, the old session deleted (this api-version can).
        fresh = text_of(await call(s, "new_session"))
        new_id, old_id = re.findall(r"\(([0-9a-f-]{36})\)", fresh)
        assert "was deleted" in fresh
        gone = await call(s, "execute_python", code="x")
        assert gone.is_error and "NameError" in text_of(gone)
        await call(s, "execute_python", code="z = 1")
    # At exit the server deletes the sessions it made; the old one went with new_session.
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, api_version=V2) as client:
        alive = {info.identifier for info in client.list_sessions()}
    assert new_id not in alive and old_id not in alive
    stderr = (local / "server-stderr.txt").read_text()
    assert pool.token not in stderr


async def test_new_session_where_the_api_version_cannot_delete(pool, tmp_path):
    env = {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
           "ACA_API_VERSION": "2024-10-02-preview"}
    too_long = "n" * 300  # a local name no file system takes: the same OSError for the server and the CLI
    async with server(env, cwd=tmp_path) as s:
        unused = text_of(await call(s, "new_session"))
        assert unused.startswith("The default session is now a fresh, empty session (")
        assert unused.endswith("was never used.")
        await call(s, "execute_python", code="kept = 1")
        fresh = text_of(await call(s, "new_session"))
        new_id, old_id = re.findall(r"\(([0-9a-f-]{36})\)", fresh)
        assert fresh.endswith("is left to expire after the pool's idle cooldown (api-version 2024-10-02-preview "
                              "cannot delete sessions).")
        gone = await call(s, "execute_python", code="kept")
        assert gone.is_error and "NameError" in text_of(gone)

        # A local file error reads as the CLI words it, on one line.
        await call(s, "upload_file", remote_path="notes.txt", content_text="x")
        failed = await call(s, "download_file", remote_path="notes.txt", local_path=too_long)
        assert failed.is_error
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, api_version="2024-10-02-preview",
                                   session_id=old_id) as client:
        assert client.execute("kept").result == 1  # nothing was deleted: the old session is still there
    cli_env = {**os.environ, **env, "ACA_SESSION_ID": new_id}
    cli = subprocess.run([sys.executable, "-m", "aca_kernel", "files", "get", "notes.txt", too_long],
                         cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=120)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    (cli_line,) = [line for line in cli.stderr.splitlines() if line.startswith("aca-sessions: error: ")]
    assert text_of(failed).startswith("File name too long: ") and text_of(failed).endswith(too_long)
    assert cli_line == f"aca-sessions: error: File name too long: {too_long}"
    assert "\n" not in text_of(failed) and "Errno" not in text_of(failed)


async def test_a_given_session_is_used_and_kept(pool, pool_env, tmp_path):
    sid = f"mcp-{uuid.uuid4()}"
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, api_version=V2, session_id=sid) as client:
        client.execute("shared = 'from the notebook'")
    async with server(pool_env, "--session", sid, cwd=tmp_path) as s:
        assert text_of(await call(s, "execute_python", code="shared")) == "[result]\n'from the notebook'"
    with aca_kernel.SessionsClient(pool.endpoint, pool.token, api_version=V2, session_id=sid) as client:
        assert client.execute("shared").result == "from the notebook"  # not deleted at exit


async def test_errors_are_clean_tool_errors_without_tokens(pool, tmp_path):
    secret = "tok-" + uuid.uuid4().hex
    # Nothing listens on port 9 of loopback: connection refused, retried (it was never sent), then reported.
    down = {"ACA_POOL_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9/", "ACA_TOKEN": secret}
    async with server(down, cwd=tmp_path) as s:
        result = await call(s, "execute_python", code="1")
        assert result.is_error
        message = text_of(result)
        assert message.startswith("Could not connect to http://127.0.0.1:9/ for execute (ConnectError")
        assert message.endswith("check the endpoint and the network.") and "\n" not in message
        assert secret not in message
        listing = await call(s, "list_files")
        assert listing.is_error and "Could not connect" in text_of(listing)
    malformed = {"ACA_POOL_MANAGEMENT_ENDPOINT": "not-a-url", "ACA_TOKEN": secret}
    async with server(malformed, cwd=tmp_path) as s:
        result = await call(s, "execute_python", code="1")
        assert result.is_error
        assert text_of(result).startswith("The pool management endpoint must be an http(s) URL, got 'not-a-url'")
    wrong_token = {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": secret}
    async with server(wrong_token, cwd=tmp_path) as s:
        result = await call(s, "execute_python", code="1")
        assert result.is_error and text_of(result).startswith("The token was rejected (401")
        assert secret not in text_of(result)
    assert secret not in (tmp_path / "server-stderr.txt").read_text()


@pytest.mark.skipif(LIVE, reason="local pool only")
async def test_without_an_endpoint_it_uses_the_local_pool(tmp_path):
    env = {"ACA_LOCAL_POOL_DIR": str(tmp_path / "state")}
    try:
        async with server(env, cwd=tmp_path) as s:
            result = await call(s, "execute_python", code="import os\nprint(os.getcwd() != '')\n6 * 7")
            assert not result.is_error, text_of(result)
            assert text_of(result).startswith("[note] running on the local session pool")
            assert text_of(result).endswith("[stdout]\nTrue\n[result]\n42")
    finally:
        subprocess.run([sys.executable, "-m", "aca_kernel", "pool", "stop"], capture_output=True, timeout=60,
                       env={**os.environ, **env})


def test_help_and_the_command_list():
    out = subprocess.run([sys.executable, "-m", "aca_kernel", "mcp", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "Model Context Protocol" in out.stdout and "--local-root" in out.stdout
    top = subprocess.run([sys.executable, "-m", "aca_kernel", "--help"], capture_output=True, text=True, timeout=60)
    assert "mcp" in top.stdout and "sessions" in top.stdout


def test_importing_the_package_loads_no_heavy_module():
    code = ("import sys, aca_kernel\n"
            "heavy = ['httpx', 'mcp', 'cryptography', 'azure.identity', 'IPython', 'pydantic']\n"
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
