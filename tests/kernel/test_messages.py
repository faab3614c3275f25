"""Every mapping from a remote reply to Jupyter messages, through a real kernel and a real local pool."""

from __future__ import annotations

import base64
import re
import struct

import pytest
from jupyter_client.manager import start_new_kernel

from .helpers import run, text


@pytest.fixture(scope="module")
def kc():
    km, client = start_new_kernel(kernel_name="aca_test")
    try:
        yield client
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def kinds(outputs: list[dict]) -> list[str]:
    return [m["msg_type"] for m in outputs]


def test_streams_and_value_with_execution_count(kc):
    reply, out = run(kc, "print('a')\nimport sys\nprint('b', file=sys.stderr)\n40 + 2")
    assert reply["status"] == "ok"
    assert text(out) == "a\n" and text(out, "stderr") == "b\n"
    result = [m for m in out if m["msg_type"] == "execute_result"]
    assert len(result) == 1
    assert result[0]["content"]["data"] == {"text/plain": "42"}
    assert result[0]["content"]["execution_count"] == reply["execution_count"]


def test_error_is_one_error_message_with_remote_traceback(kc):
    reply, out = run(kc, "def f():\n    return 1 / 0\nf()")
    assert reply["status"] == "error"
    assert reply["ename"] == "ZeroDivisionError" and reply["evalue"] == "division by zero"
    assert kinds(out) == ["error"]
    tb = "\n".join(out[0]["content"]["traceback"])
    assert "\x1b[" in tb  # coloured like IPython's
    tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)
    assert "line 2" in tb and "return 1 / 0" in tb
    assert "aca_kernel" not in tb and "_runner" not in tb
    assert "_aca_rich" not in tb and "run_cell" not in tb and "<string>" not in tb  # no wrapper frames


def test_displays_come_back_in_order_with_full_bundles(kc):
    code = (
        "from IPython.display import display, Markdown, HTML, JSON, Latex, SVG\n"
        "display(Markdown('**one**'))\n"
        "print('between')\n"
        "display(HTML('<i>two</i>'))\n"
        "display(JSON({'a': 1}))\n"
        "display(Latex('$x^2$'))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"></svg>'))\n"
        "'last'"
    )
    reply, out = run(kc, code)
    assert reply["status"] == "ok"
    assert kinds(out) == ["display_data", "stream", "display_data", "display_data", "display_data",
                          "display_data", "execute_result"]
    data = [m["content"].get("data", {}) for m in out]
    assert data[0]["text/markdown"] == "**one**"
    assert data[2]["text/html"] == "<i>two</i>"
    assert data[3]["application/json"] == {"a": 1}
    assert data[4]["text/latex"] == "$x^2$"
    assert "<svg" in data[5]["image/svg+xml"]
    assert data[6]["text/plain"] == "'last'"


def test_dataframe_as_html(kc):
    reply, out = run(kc, "import pandas as pd\ndf = pd.DataFrame({'col': range(3)})\ndf")
    assert reply["status"] == "ok"
    (res,) = [m for m in out if m["msg_type"] == "execute_result"]
    assert "<table" in res["content"]["data"]["text/html"] and "col" in res["content"]["data"]["text/plain"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_figure_is_a_real_png(kc):
    code = ("import matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3])\n"
            "plt.figure()\n"
            "plt.bar([1, 2], [3, 4])\n")
    reply, out = run(kc, code)
    assert reply["status"] == "ok"
    pngs = [m for m in out if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
    assert len(pngs) == 2
    for m in pngs:
        width, height = _png_size(base64.b64decode(m["content"]["data"]["image/png"]))
        assert width > 50 and height > 50


def test_plain_mode_sends_code_as_typed(kc):
    reply, out = run(kc, "%%aca --plain\nprint('p')\nimport sys; print('e', file=sys.stderr)\n2 + 3")
    assert reply["status"] == "ok"
    assert text(out) == "p\n" and text(out, "stderr") == "e\n"
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["5"]
    reply, out = run(kc, "%%aca --plain\nundefined_name")
    assert reply["status"] == "error" and reply["ename"] == "NameError"
    assert kinds(out) == ["error"]


def test_plain_mode_image_result(kc):
    reply, out = run(kc, "%%aca --plain\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()")
    assert reply["status"] == "ok"
    assert [m["msg_type"] for m in out] == ["display_data"]  # an image result is display_data, not a value
    assert set(out[0]["content"]["data"]) == {"image/png", "text/plain"}
    _png_size(base64.b64decode(out[0]["content"]["data"]["image/png"]))


def test_kernel_option_turns_rich_mode_off(kc):
    run(kc, "%aca_config rich=false")
    try:
        _reply, out = run(kc, "print('plain')\n7")
        assert text(out) == "plain\n"
        assert [m["content"]["data"] for m in out if m["msg_type"] == "execute_result"] == [{"text/plain": "7"}]
    finally:
        run(kc, "%aca_config rich=true")


def test_outputs_over_the_limit_are_cut_with_a_notice(kc):
    run(kc, "%aca_config max_output_bytes=2000")
    try:
        reply, out = run(kc, "print('x' * 50000)\n'done'")
        assert reply["status"] == "ok"
        assert text(out).count("x") <= 2000
        assert "output cut at 2,000 bytes" in text(out, "stderr")
        reply, out = run(kc, "'z' * 50000")  # a value over the limit is replaced, with the same notice
        assert reply["status"] == "ok"
        (res,) = [m for m in out if m["msg_type"] == "execute_result"]
        assert "zzzz" not in res["content"]["data"]["text/plain"]
        assert "over the output limit" in res["content"]["data"]["text/plain"]
        assert "output cut at 2,000 bytes" in text(out, "stderr")
    finally:
        run(kc, "%aca_config max_output_bytes=5000000")


def test_local_cells_and_magics_stay_local(kc, pool):
    reply, out = run(kc, "%%local\nonly_here = 'local'\nprint(only_here)")
    assert text(out) == "local\n"
    reply, out = run(kc, "only_here")
    assert reply["status"] == "error" and reply["ename"] == "NameError"  # the remote session never saw it
    reply, out = run(kc, "%%local\nonly_here")
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["'local'"]
    run(kc, "1")  # the session has been used
    reply, out = run(kc, "%aca_session")
    shown = text(out)
    assert "identifier" in shown and "api-version 2024-02-02-preview" in shown
    assert pool.endpoint.rstrip("/") in shown
    # this API version has no GET session: the time left is estimated from the last call and the cooldown
    assert "time left before the cooldown" in shown
    reply, out = run(kc, "%%local\nmagics = get_ipython().magics_manager.magics\n"
                         "[m for m in ('aca_session', 'aca_new_session', 'aca_upload', 'aca_download', 'aca_files', "
                         "'aca_config', 'aca_replay', 'aca') if m not in magics['line']] + "
                         "[m for m in ('aca',) if m not in magics['cell']]")
    # the kernel has all the session and file magics
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["[]"]


def test_state_persists_between_cells(kc):
    run(kc, "counter = 10")
    _reply, out = run(kc, "counter += 1\ncounter")
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["11"]
    # and `_` is the last value of the user's cell, not the wrapper's
    _reply, out = run(kc, "_ * 2")
    assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["22"]


def test_local_widgets_and_session_widgets_both_work(kc):
    reply, out = run(kc, "%%local\nimport ipywidgets\nipywidgets.IntSlider(value=3)")
    (res,) = [m for m in out if m["msg_type"] == "execute_result"]
    local = res["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]  # a live comm here
    reply, out = run(kc, "import ipywidgets\nipywidgets.IntSlider(value=3)")
    assert reply["status"] == "ok"
    (res,) = [m for m in out if m["msg_type"] == "execute_result"]
    # the session's model is mirrored here as a comm of this kernel (tests/kernel/test_widgets.py has the rest)
    remote = res["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert remote != local and "IntSlider" in res["content"]["data"]["text/plain"]


def test_upload_widgets_are_busy_while_a_remote_cell_runs(kc):
    """Their chunks cannot arrive meanwhile; without the flag a long remote cell made an upload give up."""
    reply, _ = run(kc, "%%local\nfrom aca_kernel.notebook._widgets._chunked import ChunkedUpload\n"
                       "picker = ChunkedUpload(lambda incoming: None)\nseen = []\n"
                       "picker.observe(lambda change: seen.append(change['new']), names='kernel_busy')")
    assert reply["status"] == "ok"
    reply, _ = run(kc, "import time\ntime.sleep(0.2)")
    assert reply["status"] == "ok"
    _, out = run(kc, "%%local\nprint(seen, picker.kernel_busy)")
    # the remote cell set and cleared it; then this local cell set it through IPython's pre_execute
    assert text(out) == "[True, False, True] True\n"


def test_service_timeout_is_an_error_that_says_so(kc):
    reply, out = run(kc, "%%aca --timeout 2\nimport time\ntime.sleep(8)")
    assert reply["status"] == "error" and reply["ename"] == "TimeoutError"
    assert [m["msg_type"] for m in out] == ["error"]
    assert "time limit" in "\n".join(out[0]["content"]["traceback"])


def test_top_level_await_and_the_pager(kc):
    reply, out = run(kc, "import asyncio\nawait asyncio.sleep(0)\nprint('awaited')\n'done'")
    assert reply["status"] == "ok"
    assert text(out) == "awaited\n"
    assert [m["content"]["data"] for m in out if m["msg_type"] == "execute_result"] == [{"text/plain": "'done'"}]
    reply, out = run(kc, "len?")
    assert out == []
    (payload,) = reply["payload"]
    assert payload["source"] == "page" and "Return the number of items" in payload["data"]["text/plain"]


def test_output_before_an_error_keeps_its_order(kc):
    reply, out = run(kc, "print('before')\nraise RuntimeError('after')")
    assert reply["status"] == "error" and reply["ename"] == "RuntimeError"
    assert [m["msg_type"] for m in out] == ["stream", "error"]
    assert out[0]["content"]["text"] == "before\n"


def _shell_reply(kc, msg_id: str) -> dict:
    while True:
        msg = kc.get_shell_msg(timeout=60)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


def test_completion_and_inspection_follow_the_cell_to_its_session(kc):
    run(kc, "%aca_config complete_timeout=30")  # a slow first completion must not make this test flaky
    try:
        reply, _ = run(kc, "%%aca --session side\nside_only_value = 1")
        assert reply["status"] == "ok"
        cell = "%%aca --session side\nx = side_only_v"
        content = _shell_reply(kc, kc.complete(cell, len(cell)))
        assert content["matches"] == ["side_only_value"]
        assert (content["cursor_start"], content["cursor_end"]) == (len(cell) - len("side_only_v"), len(cell))
        # the default session has no such name
        assert _shell_reply(kc, kc.complete("side_only_v", 11))["matches"] == []
        cell = "%%aca -s side\nside_only_value"
        content = _shell_reply(kc, kc.inspect(cell, len(cell)))
        assert content["found"] and "int" in content["data"]["text/plain"]
        assert _shell_reply(kc, kc.inspect("side_only_value", 15))["found"] is False
        # %%local cells complete here; any other cell magic runs in the session and completes there
        run(kc, "%%local\nlocal_only_thing = 1")
        run(kc, "remote_only_thing = 1")
        cell = "%%local\nlocal_only_t"
        assert _shell_reply(kc, kc.complete(cell, len(cell)))["matches"] == ["local_only_thing"]
        cell = "%%time\nremote_only_t"
        assert _shell_reply(kc, kc.complete(cell, len(cell)))["matches"] == ["remote_only_thing"]
        cell = "%%time\nlocal_only_t"
        assert _shell_reply(kc, kc.complete(cell, len(cell)))["matches"] == []
    finally:
        run(kc, "%aca_config complete_timeout=3")
