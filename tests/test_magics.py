"""``%%aca`` and friends in a real InteractiveShell and in a stock ipykernel, against a real local pool."""

from __future__ import annotations

import os

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from jupyter_client.manager import start_new_kernel

from tests.kernel.helpers import run as kernel_run
from tests.kernel.helpers import text


@pytest.fixture(scope="module")
def ip(pool):
    saved = {k: os.environ.get(k) for k in ("ACA_POOL_MANAGEMENT_ENDPOINT", "ACA_TOKEN")}
    os.environ["ACA_POOL_MANAGEMENT_ENDPOINT"] = pool.endpoint
    os.environ["ACA_TOKEN"] = pool.token or ""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "aca_sessions")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "aca_sessions")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cell(ip, source: str):
    with capture_output() as cap:
        result = ip.run_cell(source)
    return result, cap


def test_cell_magic_streams_and_value(ip):
    result, cap = cell(ip, "%%aca\nx = 40\nprint('hi')\nx + 2")
    assert result.success
    assert "hi\n" in cap.stdout
    assert repr(result.result) == "42"
    assert result.result._repr_mimebundle_()[0]["text/plain"] == "42"


def test_remote_error_shows_the_remote_traceback_only(ip):
    result, cap = cell(ip, "%%aca\ndef g():\n    raise KeyError('missing')\ng()")
    assert type(result.error_in_exec).__name__ == "KeyError"
    assert "missing" in cap.stdout and "line 2" in cap.stdout
    assert "aca_kernel" not in cap.stdout and "magics.py" not in cap.stdout


def test_out_brings_a_whole_dataframe_back(ip):
    result, cap = cell(ip, "%%aca --out frame\nimport pandas as pd\npd.DataFrame({'n': range(5000)})")
    assert result.success, cap.stdout
    frame = ip.user_ns["frame"]
    assert type(frame).__name__ == "DataFrame"
    assert len(frame) == 5000 and int(frame["n"].sum()) == sum(range(5000))


def test_out_plain_value_and_quiet(ip):
    result, cap = cell(ip, "%%aca --out value --quiet\n{'a': [1, 2], 'b': 'text'}")
    assert result.success and result.result is None
    assert ip.user_ns["value"] == {"a": [1, 2], "b": "text"}
    assert cap.stdout == "" and cap.outputs == []


def test_inputs_are_sent_then_used(ip):
    import pandas as pd

    ip.user_ns["local_frame"] = pd.DataFrame({"v": [1, 2, 3]})
    ip.user_ns["local_opts"] = {"factor": 10}
    result, cap = cell(ip, "%%aca -i local_frame -i local_opts --out total\n"
                           "int(local_frame['v'].sum()) * local_opts['factor']")
    assert result.success, cap.stdout
    assert ip.user_ns["total"] == 60


def test_named_sessions_are_separate(ip):
    assert cell(ip, "%%aca --session left\nside = 'left'")[0].success
    result, _ = cell(ip, "%%aca --session right\n'side' in dir()")
    assert repr(result.result) == "False"
    result, _ = cell(ip, "%aca --session left -- side")
    assert repr(result.result) == "'left'"
    _, cap = cell(ip, "%aca_session --session left")
    assert "session 'left'" in cap.stdout and "identifier" in cap.stdout


def test_line_magic_one_liner(ip):
    result, _ = cell(ip, "%aca 6 * 7")
    assert repr(result.result) == "42"


@pytest.mark.parametrize("source, message", [
    ("%%aca --out 1bad\n1", "--out needs a Python variable name"),
    ("%%aca -i not_defined_anywhere\n1", "no local variable"),
    ("%%aca --bogus\n1", "unrecognized arguments"),
    ("%aca --session s 1", "Put `--` between the options and the code"),
    ("%aca_config nonsense=1", "use NAME=VALUE"),
    ("%aca_config rich=flase", "rich=flase: use true or false"),
])
def test_user_mistakes_are_usage_errors_without_traceback(ip, source, message):
    result, cap = cell(ip, source)
    assert isinstance(result.error_in_exec, UsageError)
    assert message in str(result.error_in_exec)
    assert "Traceback" not in cap.stdout + cap.stderr


def test_config_show_and_set(ip):
    _, cap = cell(ip, "%aca_config")
    assert "rich = True" in cap.stdout and "max_output_bytes" in cap.stdout
    cell(ip, "%aca_config cooldown=120")
    try:
        assert ip._aca_context.settings.cooldown == 120.0
    finally:
        cell(ip, "%aca_config cooldown=300")


def test_new_session_rotates_the_identifier(ip):
    cell(ip, "%%aca\nmarker = 1")
    before = ip._aca_context.client().session_id
    _, cap = cell(ip, "%aca_new_session")
    after = ip._aca_context.client().session_id
    assert after != before and after in cap.stdout
    result, _ = cell(ip, "%%aca\n'marker' in dir()")
    assert repr(result.result) == "False"
    _, cap = cell(ip, f"%aca_new_session --attach {before}")
    result, _ = cell(ip, "%%aca\nmarker")
    assert repr(result.result) == "1"


def test_stock_ipykernel_with_load_ext(pool):
    env = {**os.environ, "ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
           "ACA_PROGRESS_AFTER": "60"}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        reply, _ = kernel_run(kc, "%load_ext aca_sessions")
        assert reply["status"] == "ok"
        reply, out = kernel_run(kc, "%%aca\nprint('remote')\n'value'")
        assert reply["status"] == "ok"
        assert text(out) == "remote\n"
        results = [m for m in out if m["msg_type"] == "execute_result"]
        assert [m["content"]["data"]["text/plain"] for m in results] == ["'value'"]
        assert results[0]["content"]["execution_count"] == reply["execution_count"]
        reply, out = kernel_run(kc, "%%aca --out got\n[1, 2, 3]")
        reply, out = kernel_run(kc, "sum(got)")
        assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["6"]
        reply, out = kernel_run(kc, "%%aca\n1/0")
        assert reply["status"] == "error" and reply["ename"] == "ZeroDivisionError"
        assert [m["msg_type"] for m in out] == ["error"]
        reply, out = kernel_run(kc, "%%aca --out 2x\n1")
        assert reply["status"] == "error" and reply["ename"] == "UsageError"
        assert "--out needs a Python variable name" in text(out, "stderr")
        assert "Traceback" not in text(out, "stderr")
        reply, out = kernel_run(kc, "all(get_ipython().find_line_magic(m) for m in "
                                    "('aca', 'aca_upload', 'aca_download', 'aca_ls', 'aca_files', 'aca_session', "
                                    "'aca_new_session', 'aca_config', 'aca_replay'))")
        assert [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "execute_result"] == ["True"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_permission_denied_is_one_line_naming_the_role(ip):
    import httpx

    def forbidden(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": {"code": "Forbidden", "message": "no access"}})

    ctx = ip._aca_context
    ctx.transport = httpx.MockTransport(forbidden)  # fault injection: the emulator does not do RBAC
    ctx.settings_changed()
    try:
        result, cap = cell(ip, "%%aca\n1")
    finally:
        ctx.transport = None
        ctx.settings_changed()
    assert type(result.error_in_exec).__name__ == "PermissionDenied"
    shown = cap.stdout + cap.stderr
    assert "Azure ContainerApps Session Executor" in shown
    assert "Traceback" not in shown and len(shown.strip().splitlines()) == 1


def test_inputs_follow_the_cell_to_another_api_version(ip):
    import numpy as np

    ip.user_ns["grid"] = np.arange(12).reshape(3, 4)
    result, cap = cell(ip, "%%aca --api-version 2025-10-02-preview -i grid --out shape\ngrid.shape")
    assert result.success, cap.stdout
    assert ip.user_ns["shape"] == (3, 4)  # a tuple comes back as a tuple (pickled, not JSON)


def test_endpoint_option_runs_in_another_pool(ip, pool):
    other = pool.pool_endpoint("magicpool")
    assert cell(ip, "%%aca\nwhere = 'default pool'")[0].success
    result, cap = cell(ip, f"%%aca --endpoint {other}\n'where' in dir()")
    assert result.success, cap.stdout
    assert repr(result.result) == "False"  # a separate session in the other pool
    assert cell(ip, f"%%aca --endpoint {other}\nwhere = 'other pool'")[0].success
    result, _ = cell(ip, "%%aca\nwhere")
    assert repr(result.result) == "'default pool'"
    result, _ = cell(ip, f"%aca --endpoint {other} -- where")
    assert repr(result.result) == "'other pool'"


def test_replay_shows_its_plan_then_resumes_at_the_cell_that_failed(ip):
    from aca_kernel.notebook._replay import ReplayCell

    state = ip._aca_context.session("replayed")
    state.replay = [ReplayCell(3, "first_ = 1"), ReplayCell(4, "1 / 0\n# two lines"), ReplayCell(5, "third_ = 3")]
    _, cap = cell(ip, "%aca_replay --session replayed")
    assert "In [3]: first_ = 1" in cap.stdout and "In [4]: 1 / 0  (+1 lines)" in cap.stdout
    assert "%aca_replay --yes --session replayed" in cap.stdout and len(state.replay) == 3  # nothing ran yet
    _, cap = cell(ip, "%aca_replay --session replayed --yes")
    assert "[2/3] In [4]: 1 / 0  (+1 lines) failed: ZeroDivisionError" in cap.stderr
    assert [c.code for c in state.replay] == ["1 / 0\n# two lines", "third_ = 3"]  # the first is not run twice
    result, _ = cell(ip, "%aca --session replayed -- first_")
    assert repr(result.result) == "1"
    state.replay[0] = ReplayCell(4, "second_ = 2")
    _, cap = cell(ip, "%aca_replay --session replayed -y")
    assert "Replayed 2 cell(s)" in cap.stdout and state.replay == []
    result, _ = cell(ip, "%aca --session replayed -- (first_, second_, third_)")
    assert repr(result.result) == "(1, 2, 3)"


def test_the_replay_button_shows_the_plan_first_and_runs_only_on_the_second_click(ip, monkeypatch):
    import IPython.display
    import ipywidgets

    from aca_kernel.notebook import magics as magics_module
    from aca_kernel.notebook._replay import ReplayCell

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **_: shown.extend(objs))
    monkeypatch.setattr(magics_module, "in_kernel", lambda _shell: True)
    state = ip._aca_context.session("clicked")
    state.replay = [ReplayCell(2, "clicked_ = 7")]
    magics_module._offer_replay(ip, ip.magics_manager.registry["ACAMagics"], "clicked")
    (box,) = shown
    buttons = {b.description: b for b in box.children[0].children if isinstance(b, ipywidgets.Button)}
    ask, run_them = buttons["Replay earlier cells…"], buttons["Run them"]
    assert ask.layout.width == "auto"  # the label is shown whole, not cut to the default width
    assert run_them.layout.display == "none"
    with capture_output() as cap:
        ask.click()
    assert "%aca_replay would rebuild session" in cap.stdout and "In [2]: clicked_ = 7" in cap.stdout
    assert ask.disabled and run_them.layout.display is None
    assert [c.code for c in state.replay] == ["clicked_ = 7"]  # nothing ran yet
    result, _ = cell(ip, "%aca --session clicked -- 'clicked_' in dir()")
    assert repr(result.result) == "False"
    with capture_output() as cap:
        run_them.click()
    assert "Replayed 1 cell(s)" in cap.stdout and state.replay == [] and run_them.disabled
    result, _ = cell(ip, "%aca --session clicked -- clicked_")
    assert repr(result.result) == "7"


def test_the_replay_button_with_nothing_to_replay_offers_no_run(ip, monkeypatch):
    import IPython.display

    from aca_kernel.notebook._replay import offer

    shown, ran = [], []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **_: shown.extend(objs))
    offer(lambda: None, lambda: ran.append(True))
    ask, run_them = shown[0].children[0].children
    with capture_output() as cap:
        ask.click()
    assert "Nothing to replay." in cap.stdout and run_them.layout.display == "none" and ran == []


def test_replay_failure_is_one_line_that_says_what_to_do(ip, monkeypatch):
    ctx = ip._aca_context
    monkeypatch.setenv("ACA_TOKEN", "wrong-token")  # the local pool answers it with a real 401
    ctx.settings_changed()
    try:
        from aca_kernel.notebook._replay import ReplayCell

        ctx.session(None).replay = [ReplayCell(1, "x = 1")]
        result, cap = cell(ip, "%aca_replay --yes")
    finally:
        monkeypatch.undo()
        ctx.settings_changed()
    assert type(result.error_in_exec).__name__ == "ClientAuthenticationError"
    shown = cap.stdout + cap.stderr
    assert "az login" in shown and "wrong-token" not in shown
    assert "Traceback" not in shown and "magics.py" not in shown and len(shown.strip().splitlines()) == 1
