"""Microsoft's own LangChain tool, unchanged, against the pool: the emulator must speak what real clients speak."""

from __future__ import annotations

import base64
import io
import json

import pytest
from _pool_http import V2510, connect, delete_session, emulator_only, q, token_for
from conftest import wait_until

sessions = pytest.importorskip("langchain_azure_dynamic_sessions")


@pytest.fixture
def tool(pool):
    token = token_for(pool)
    tool = sessions.SessionsPythonREPLTool(pool_management_endpoint=pool.endpoint,
                                           access_token_provider=lambda: token)
    yield tool
    with connect(pool) as http:
        delete_session(http, tool.session_id)


def test_execute_value_stdout_and_state(tool):
    props = tool.execute("x = 40\nprint('Answer is', x)\nx + 2")
    assert props["status"] == "Success"
    assert props["stdout"] == "Answer is 40\n"
    assert props["result"] == 42
    content = json.loads(tool.invoke("x * 2"))
    assert content == {"result": 80, "stdout": "", "stderr": ""}


def test_execute_error(tool):
    props = tool.execute("raise ValueError('bad input')")
    assert props["status"] == "Failure"
    assert props["result"] is None
    assert "ValueError: bad input" in props["stderr"]
    content = json.loads(tool.invoke("undefined_name"))
    assert content["result"] is None
    assert "NameError" in content["stderr"]


def test_execute_image(tool):
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')"
    props = tool.execute(code)
    assert props["status"] == "Success", props["stderr"]
    result = props["result"]
    assert result["type"] == "image"
    assert result["format"] == "png"
    assert base64.b64decode(result["base64_data"]).startswith(b"\x89PNG\r\n\x1a\n")
    # the tool's LLM-facing content drops the image bytes
    content = json.loads(tool.invoke(code))
    assert content["result"] == {"type": "image", "format": "png"}


def test_upload_list_download(tool, tmp_path):
    meta = tool.upload_file(data=io.BytesIO(b"a,b\n1,2\n3,4\n"), remote_file_path="data.csv")
    assert meta.filename == "data.csv"
    assert meta.size_in_bytes == 12
    local = tmp_path / "local.txt"
    local.write_bytes(b"from a local file")
    meta = tool.upload_file(local_file_path=str(local))
    assert (meta.filename, meta.full_path) == ("local.txt", "/mnt/data/local.txt")

    listed = sorted((f.filename, f.size_in_bytes) for f in tool.list_files())
    assert listed == [("data.csv", 12), ("local.txt", 17)]
    assert tool.download_file(remote_file_path="data.csv").read() == b"a,b\n1,2\n3,4\n"
    out = tmp_path / "copy.txt"
    tool.download_file(remote_file_path="local.txt", local_file_path=str(out))
    assert out.read_bytes() == b"from a local file"
    # code in the session reads the uploads from /mnt/data
    props = tool.execute("import pandas as pd\npd.read_csv('/mnt/data/data.csv')['b'].sum()")
    assert props["result"] == 6


@emulator_only
def test_delete_session_rotates_and_deletes(tool, pool):
    tool.execute("kept = 1")
    old = tool.session_id
    tool.delete_session()  # DELETE session with 2025-10-02-preview, in a background thread
    assert tool.session_id != old
    with connect(pool) as http:
        def gone() -> bool:
            listed = http.get("listSessions", params=q(None, V2510)).json()["value"]
            return old not in [s["identifier"] for s in listed]

        assert wait_until(gone)
    assert tool.execute("'kept' in dir()")["result"] is False
