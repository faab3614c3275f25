"""The session runtime's calls and reply parsing on their own, plus faults the emulator cannot produce.

Fault injection (garbled envelopes, a vanished value file, image formats the emulator never returns) uses httpx.MockTransport, the
client's test seam; everything else, including the service's 4096-character cut of v2 streams, runs against the
real local pool.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from aca_kernel.notebook import _runtime
from aca_kernel.notebook._context import ACAContext, ACASettings
from aca_kernel.notebook._runner import RemoteRunner
from aca_kernel.notebook._tracebacks import parse_stderr_error


def test_runtime_falls_back_inside_plain_python():
    # A session without IPython still runs the cell through the runtime, and says so in the envelope.
    call = _runtime.cell_code("x = 2\nprint('out')\nx * 21", count=3, install=True)
    install, expr = call.rsplit("\n", 1)
    script = f"import sys\n{install}\nvalue = {expr}\nsys.stdout.write('\\n' + value)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    env = _runtime.parse_envelope(proc.stdout.splitlines()[-1])
    assert env is not None and env.ipython is False and env.runtime["python"] == platform.python_version()
    assert env.outputs == [{"output_type": "stream", "name": "stdout", "text": "out\n"},
                           {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {},
                            "execution_count": 3}]


def test_a_call_without_the_runtime_answers_missing_and_runs_nothing():
    call = _runtime.cell_code("open('ran', 'w').close()", count=1)
    proc = subprocess.run([sys.executable, "-c", f"import sys\nsys.stdout.write({call})"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert _runtime.is_missing(proc.stdout) and _runtime.is_missing(repr(proc.stdout))


@pytest.mark.parametrize("value", [
    None, 42, "plain text", "@@ACA-RICH/2@@{not json", "@@ACA-RICH/9@@{}", '@@ACA-RICH/2@@{"v": 1}',
    '@@ACA-RICH/1@@{"v": 1, "outputs": []}', {"type": "image"},
])
def test_garbled_or_missing_envelopes_are_rejected(value):
    assert _runtime.parse_envelope(value) is None


def test_envelope_quoted_by_the_service_is_still_read():
    body = '@@ACA-RICH/2@@{"v": 2, "outputs": [], "count": 7}'
    assert _runtime.parse_envelope(repr(body)).count == 7


def test_completion_reply_quoted_by_the_service_is_still_read():
    body = _runtime.REPLY_MARKER + '{"found": true, "data": {}}'
    assert _runtime.parse_reply(body) == _runtime.parse_reply(repr(body)) == {"found": True, "data": {}}
    assert _runtime.parse_reply(repr(body)[:-2] + "'") is None


@pytest.mark.parametrize("stderr, ename, evalue", [
    ("division by zero\n---------\nZeroDivisionError  Traceback (most recent call last)\nCell In[3], line 1\n"
     "----> 1 1/0\n\nZeroDivisionError: division by zero\n", "ZeroDivisionError", "division by zero"),
    ("illegal target for annotation (3407605186.py, line 6)  Cell In[2363], line 6\n    'f': 'T.csv'\n    ^\n"
     "SyntaxError: illegal target for annotation\n\n", "SyntaxError", "illegal target for annotation"),
    ("Request timed out waiting for code execution to complete", "TimeoutError",
     "Request timed out waiting for code execution to complete"),
    ("Execution aborted", "RemoteExecutionError", "Execution aborted"),
    ("", "RemoteExecutionError", "the remote execution failed without any message"),
])
def test_stderr_of_a_failure_becomes_an_error(stderr, ename, evalue):
    fallback = "TimeoutError" if "timed out" in stderr else "RemoteExecutionError"
    name, value, tb = parse_stderr_error(stderr, fallback)
    assert (name, value) == (ename, evalue)
    assert tb and any("\x1b[" in line for line in tb)


@pytest.fixture(autouse=True)
def _static_token(monkeypatch):
    monkeypatch.setenv("ACA_TOKEN", "static-test-token")


def _context(handler) -> ACAContext:
    settings = ACASettings(endpoint="http://pool.invalid/", api_version="2025-10-02-preview", session_id="s-1234")
    ctx = ACAContext(None, settings)
    ctx.transport = httpx.MockTransport(handler)
    return ctx


def _v2_reply(stdout: str, result: object) -> httpx.Response:
    return httpx.Response(200, json={"id": "e1", "identifier": "s-1234", "executionType": "Synchronous",
                                     "status": "Succeeded",
                                     "result": {"stdout": stdout, "stderr": "", "executionResult": result,
                                                "executionTimeInMilliseconds": 3}})


def test_garbled_envelope_falls_back_to_the_plain_reply():
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return _v2_reply("printed\n", "@@ACA-RICH/2@@{truncated")

    ctx = _context(handler)
    outcome = RemoteRunner(ctx).run("print('printed')")
    assert len(sent) == 1  # never re-sent
    assert outcome.ok
    assert outcome.outputs[0] == {"output_type": "stream", "name": "stdout", "text": "printed\n"}


@contextlib.contextmanager
def _pool_context(pool, monkeypatch, api_version: str) -> Iterator[ACAContext]:
    """A context on the shared local pool (real HTTP, real kernel); its sessions are deleted at the end."""
    monkeypatch.setenv("ACA_TOKEN", pool.token or "")
    ctx = ACAContext(None, ACASettings(endpoint=pool.endpoint, api_version=api_version))
    try:
        yield ctx
    finally:
        ctx.close(delete_sessions=True)


LONG_STREAMS = "import sys\nprint('y' * 10000)\nprint('z' * 6000, file=sys.stderr)"


@pytest.mark.parametrize("api_version", ["2024-10-02-preview", "2025-10-02-preview"])
def test_service_cut_streams_are_announced_in_plain_mode(pool, monkeypatch, api_version):
    with _pool_context(pool, monkeypatch, api_version) as ctx:
        outcome = RemoteRunner(ctx).run(LONG_STREAMS, rich=False)
    assert outcome.ok
    assert (outcome.execution.stdout, outcome.execution.stderr) == ("y" * 4096, "z" * 4096)  # the pool cut them
    assert outcome.outputs == [{"output_type": "stream", "name": "stdout", "text": "y" * 4096},
                               {"output_type": "stream", "name": "stderr", "text": "z" * 4096}]
    for name in ("stdout", "stderr"):
        assert any(f"cut {name} at 4096 characters" in n and "rich mode" in n for n in outcome.notices), name


def test_v1_streams_come_back_whole_without_a_notice(pool, monkeypatch):
    with _pool_context(pool, monkeypatch, "2024-02-02-preview") as ctx:
        outcome = RemoteRunner(ctx).run(LONG_STREAMS, rich=False)
    assert outcome.ok and outcome.notices == []
    assert outcome.outputs == [{"output_type": "stream", "name": "stdout", "text": "y" * 10000 + "\n"},
                               {"output_type": "stream", "name": "stderr", "text": "z" * 6000 + "\n"}]


def test_json_values_go_inline_and_others_by_file(pool, monkeypatch):
    with _pool_context(pool, monkeypatch, "2025-10-02-preview") as ctx:
        runner = RemoteRunner(ctx)
        client = ctx.session().client
        uploads = []
        real_upload = client.upload_file
        monkeypatch.setattr(client, "upload_file", lambda *a, **k: uploads.append(a[1]) or real_upload(*a, **k))
        runner.send_variable("a", {"k": [1, 2]})
        assert uploads == []  # JSON travels inside the code
        runner.send_variable("b", (1, 2))
        assert len(uploads) == 1 and uploads[0].endswith(".pkl")  # a tuple would come back a list: pickled
        outcome = runner.run("(a, b)")
    assert outcome.ok
    assert outcome.outputs[-1]["data"]["text/plain"] == "({'k': [1, 2]}, (1, 2))"


@pytest.mark.parametrize("fmt, mime, payload", [
    ("png", "image/png", b"\x89PNG\r\n\x1a\n-png-bytes"),
    ("jpeg", "image/jpeg", b"\xff\xd8\xff\xe0-jpeg-bytes"),
    ("svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>'),
])
def test_plain_image_results_become_display_data(fmt, mime, payload):
    # The emulator only returns PNG results; JPEG and SVG results of the real service are injected here.
    import base64

    image = {"type": "image", "format": fmt, "base64_data": base64.b64encode(payload).decode()}
    outcome = RemoteRunner(_context(lambda request: _v2_reply("", image))).run("show()", rich=False)
    assert outcome.ok
    (item,) = outcome.outputs
    assert item["output_type"] == "display_data"
    assert set(item["data"]) == {mime, "text/plain"}
    shown = item["data"][mime]
    assert (shown == payload.decode()) if fmt == "svg" else (base64.b64decode(shown) == payload)


def test_rich_mode_returns_long_output_whole_through_the_value(pool, monkeypatch):
    # v2 API versions cut the service's stdout and stderr at 4096 characters (the pool does, as the service
    # probably does): rich mode carries output in the value, which is never cut.
    code = "import sys\nprint('x' * 10000)\nprint('e' * 6000, file=sys.stderr)"
    with _pool_context(pool, monkeypatch, "2025-10-02-preview") as ctx:
        plain = RemoteRunner(ctx).run(code, rich=False)
        outcome = RemoteRunner(ctx).run(code)
    assert (plain.execution.stdout, plain.execution.stderr) == ("x" * 4096, "e" * 4096)  # the streams are cut
    assert outcome.ok and outcome.notices == []
    assert outcome.execution.stdout == "" and outcome.execution.stderr == ""  # nothing went through the streams
    assert outcome.outputs == [{"output_type": "stream", "name": "stdout", "text": "x" * 10000 + "\n"},
                               {"output_type": "stream", "name": "stderr", "text": "e" * 6000 + "\n"}]


def test_the_runtime_is_sent_once_and_again_only_when_the_session_lost_it():
    sent = []
    envelope = '@@ACA-RICH/2@@{"v": 2, "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\\n"}]}'

    def handler(request: httpx.Request) -> httpx.Response:
        code = json.loads(request.content)["code"]
        sent.append(code)
        if len(sent) == 3:  # the session was recycled: the call finds no runtime and runs nothing
            return _v2_reply("", _runtime.MISSING)
        return _v2_reply("", envelope)

    runner = RemoteRunner(_context(handler))
    first = runner.run("print('hi')")
    second = runner.run("print('hi')")
    third = runner.run("print('hi')")
    assert len(sent) == 4
    assert len(sent[0]) > 5000 and len(sent[1]) < 400 and len(sent[2]) < 400 and len(sent[3]) > 5000
    assert sent[3].endswith(sent[2])  # the same call again, after the runtime this time
    assert first.ok and second.ok and first.notices == second.notices == []
    assert third.ok and third.session_lost and "lost its state" in third.notices[0]


def test_completion_with_an_unusable_endpoint_gives_nothing_rather_than_an_error():
    ctx = ACAContext(None, ACASettings(endpoint="http://pool.invalid/"))
    runner = RemoteRunner(ctx)
    assert runner.complete("x", 1, endpoint="ftp://not-a-pool") is None
    assert runner.inspect("x", 0, endpoint="ftp://not-a-pool") is None


def test_garbled_fields_inside_a_readable_envelope_do_not_fail_the_cell():
    # The cell ran; fields of the wrong type are dropped or defaulted, never an error (and never a re-send).
    sent = []
    body = {"v": 2, "count": "x", "payload": "p", "user_expressions": [], "outputs": [
        {"output_type": "display_data", "data": ["not", "a", "bundle"], "metadata": {}},
        {"output_type": "display_data", "data": {"text/plain": "kept"}, "metadata": [1], "transient": "t"},
        {"output_type": "page", "data": {"text/plain": "doc"}, "start": "top"},
        {"output_type": "error", "ename": None, "traceback": "tb"},
        {"output_type": "stream", "name": "stdout", "text": "ok\n"},
    ]}

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return _v2_reply("", "@@ACA-RICH/2@@" + json.dumps(body))

    outcome = RemoteRunner(_context(handler)).run("anything", count=4)
    assert len(sent) == 1 and outcome.ok
    assert outcome.outputs == [
        {"output_type": "display_data", "data": {"text/plain": "kept"}, "metadata": {}},
        {"output_type": "error", "ename": "Error", "evalue": "", "traceback": []},
        {"output_type": "stream", "name": "stdout", "text": "ok\n"},
    ]
    assert outcome.payload == [] and outcome.user_expressions == {} and outcome.count == 4


def test_a_value_that_cannot_be_fetched_keeps_the_outputs_and_runs_nothing_again():
    # The value file vanishing between the cell and the download is a fault the pool does not produce.
    executions = []
    body = {"v": 2, "outputs": [{"output_type": "stream", "name": "stdout", "text": "done\n"}],
            "value_file": ".aca-out-x.pkl"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/executions"):
            executions.append(request)
            return _v2_reply("", "@@ACA-RICH/2@@" + json.dumps(body))
        return httpx.Response(404, json={"error": {"code": "NotFound", "message": "no such file"}})

    outcome = RemoteRunner(_context(handler)).run("make()", export_value=True)
    assert len(executions) == 1 and outcome.ok and not outcome.has_value
    assert outcome.outputs == [{"output_type": "stream", "name": "stdout", "text": "done\n"}]
    assert any(n.startswith("--out: the value could not be transferred (") for n in outcome.notices)


def test_a_failing_progress_display_does_not_abandon_the_cell(pool, monkeypatch):
    calls = []

    def broken(elapsed: float) -> None:
        calls.append(elapsed)
        raise RuntimeError("display gone")

    with _pool_context(pool, monkeypatch, "2025-10-02-preview") as ctx:
        outcome = RemoteRunner(ctx).run("import time\ntime.sleep(1)\n'finished'", on_wait=broken)
    assert len(calls) == 1  # tried once, then left alone
    assert outcome.ok and outcome.outputs[-1]["data"]["text/plain"] == "'finished'"


def test_a_garbled_completion_reply_gives_no_completions():
    from types import SimpleNamespace

    from aca_kernel.kernel.kernel import ACAKernel

    for garbled in ({"matches": 3}, {"matches": ["a"], "cursor_start": "x"}, {"metadata": []}):
        fake = SimpleNamespace(runner=SimpleNamespace(complete=lambda *a, g=garbled, **k: g),
                               _remote_ready=lambda: True)
        reply = ACAKernel.do_complete(fake, "%%aca -s left\nab", 16)
        assert reply == {"status": "ok", "matches": [], "cursor_start": 16, "cursor_end": 16, "metadata": {}}


def test_every_setting_has_a_kernel_option():
    from aca_kernel.kernel.kernel import ACAKernel

    assert set(ACASettings.class_own_traits(config=True)) <= set(ACAKernel.class_own_traits(config=True))


def test_a_one_line_error_is_one_line_without_the_token():
    from aca_kernel.notebook._display import one_line_error
    from aca_kernel.notebook._tracebacks import error_line

    err = one_line_error(RuntimeError("request failed\nAuthorization: Bearer secret.token.value"))
    (line,) = err._render_traceback_()
    assert "secret.token.value" not in line + str(err) and "\n" not in line
    assert error_line(OSError()) == "\x1b[31m\x1b[1mOSError\x1b[0m"


def test_the_session_description_shows_no_secret_of_the_endpoint():
    endpoint = "https://user:hunter2@pool.example/p?sig=SECRET"
    ctx = ACAContext(None, ACASettings(endpoint=endpoint, session_id="s-1234"))
    try:
        before = ctx.describe()
        ctx.session()
        after = ctx.describe()
    finally:
        ctx.close()
    for line in (before, after):
        assert "pool.example/p" in line and "hunter2" not in line and "SECRET" not in line
