"""VS Code's own requests (start-up, the Variables view, the Data Viewer) on "ACA Sessions" and a stock ipykernel.

VS Code's Jupyter extension sends helper code as executions with ``silent: false, store_history: false`` and reads
what it prints (``executeSilently`` in vscode-jupyter's src/kernels/helpers.ts): at start the ipywidgets version
probe and its set-up code (the notebook's path as ``__vsc_ipynb_file__``, completer and matplotlib settings, the
working directory), then after each cell ``_VSCODE_...`` functions that list the namespace (``%who_ls``), describe
one variable, and page a DataFrame, Series, ndarray or list as JSON (``orient="split"``). The Variables view also
sends ``inspect_request``s, and the notebook Variables view of newer versions answers from a thread its request
starts, through a display it updates later (``execCodeInBackgroundThread``). The helpers below are written for these
tests and ask the same kinds of question; both kernels hold the same variables and the replies are compared after
test_parity's normalising.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from jupyter_client.manager import start_new_kernel

from .conftest import write_kernelspec
from .helpers import run, text
from .normalise import normalise
from .test_parity import Pair

# --- the helpers a front end sends (written for these tests) ----------------------------------------------------

WIDGETS_PROBE = ("try:\n    import ipywidgets as _VSCODE_ipywidgets\n"
                 "    print('ipywidgets-version:' + _VSCODE_ipywidgets.__version__)\n"
                 "    del _VSCODE_ipywidgets\nexcept ImportError:\n    pass\n")

CHAT_BRIDGE = ("def __VSCODE_inject_module():\n    import sys, types\n    bridge = types.ModuleType('vscode')\n"
               "    bridge.chat = types.SimpleNamespace(send_message=lambda *args, **kwargs: None)\n"
               "    sys.modules['vscode'] = bridge\n\n__VSCODE_inject_module()\ndel __VSCODE_inject_module\n")


def start_up_code(notebook: Path) -> str:
    """The set-up VS Code sends once the kernel is up, as one request."""
    return "\n".join([
        f"__vsc_ipynb_file__ = {str(notebook)!r}",
        "%config Completer.use_jedi = False",
        "import matplotlib\n%matplotlib inline\n_VSCode_defaultMatplotlib_Params = dict(matplotlib.rcParams)",
        "matplotlib.rcParams.update(_VSCode_defaultMatplotlib_Params)",
        f"import os as _VSCODE_os\ntry:\n    _VSCODE_os.chdir({str(notebook.parent)!r})\nexcept OSError:\n    pass\n"
        "del _VSCODE_os",
    ])


# The Variables view: names and types of what %who_ls lists, then one variable's shape and length.
VARIABLE_TYPES = """
def _VSCODE_test_types(names):
    import json
    found = []
    for name in names:
        kind = type(globals()[name])
        found.append({"name": name, "type": kind.__name__, "fullType": kind.__module__ + "." + kind.__qualname__})
    print(json.dumps(found))

_VSCODE_test_names = %who_ls
_VSCODE_test_types(_VSCODE_test_names)
del _VSCODE_test_types, _VSCODE_test_names
"""


def variable_info(name: str) -> str:
    return f"""
def _VSCODE_test_info(value):
    import json
    info = {{"type": type(value).__name__, "shape": "", "count": 0}}
    if isinstance(getattr(value, "shape", None), tuple):
        info["shape"] = str(value.shape)
    try:
        info["count"] = len(value)
    except TypeError:
        pass
    print(json.dumps(info))

_VSCODE_test_info({name})
del _VSCODE_test_info
"""


# The notebook Variables view of newer VS Code: a placeholder display, updated from a thread with the answer.
BACKGROUND_MIME = "application/vnd.test.variables"
BACKGROUND = f"""
def _VSCODE_test_background():
    import threading, time
    from IPython.display import display
    handle = display({{"{BACKGROUND_MIME}": ""}}, raw=True, display_id=True)

    def describe():
        time.sleep(0.2)  # stands in for describing many variables
        names = get_ipython().run_line_magic("who_ls", "")
        rows = [{{"name": n, "type": type(globals()[n]).__name__, "value": repr(globals()[n])[:200]}}
                for n in names]
        handle.update({{"{BACKGROUND_MIME}.result": rows}}, raw=True)

    threading.Thread(target=describe, daemon=True).start()

_VSCODE_test_background()
del _VSCODE_test_background
"""


def data_viewer(what: str, expression: str, start: int = 0, end: int = 0) -> str:
    """The Data Viewer: the columns and row count of a frame-like value, or rows [start, end) as split JSON."""
    return f"""
def _VSCODE_test_frame(value):
    import json
    import pandas as pd
    frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame(value)
    if {what!r} == "info":
        print(json.dumps({{"columns": [{{"key": str(c), "type": str(t)}} for c, t in frame.dtypes.items()],
                          "indexColumn": frame.index.name or "index", "rowCount": len(frame)}}))
    else:
        print(frame.iloc[{start}:{end}].to_json(orient="split", date_format="iso"))

_VSCODE_test_frame({expression})
del _VSCODE_test_frame
"""


# --- driving the kernels ------------------------------------------------------------------------------------------

def aca_kernelspec(kernelspecs: Path, endpoint: str, token: str | None, **env: str) -> tuple[str, str]:
    """(kernelspec name, session identifier) of an ACA Sessions kernel with a known identifier."""
    ident = str(uuid.uuid4())
    name = f"aca_test_vscode_{ident[:8]}"
    write_kernelspec(kernelspecs, name, {"ACA_POOL_MANAGEMENT_ENDPOINT": endpoint, "ACA_TOKEN": token or "",
                                         "ACA_PROGRESS_AFTER": "60", "ACA_SESSION_ID": ident, **env})
    return name, ident


def pool_sessions(pool: Any) -> set[str]:
    from aca_kernel import SessionsClient

    with SessionsClient(pool.endpoint, pool.token, api_version="2025-02-02-preview") as client:
        return {s.identifier for s in client.list_sessions()}


def ask(kc: Any, code: str, **kwargs: Any) -> tuple[dict, list[dict]]:
    """A front end's request: kept out of the history, not silent (what VS Code sends)."""
    return run(kc, code, store_history=False, **kwargs)


def printed_json(kc: Any, code: str) -> Any:
    reply, out = ask(kc, code)
    assert reply["status"] == "ok", reply
    return json.loads(text(out))


def inspected(kc: Any, name: str, cwd: str) -> dict[str, Any]:
    """What the Variables view reads from an inspect_request at the start of ``name`` (detail level 0)."""
    msg_id = kc.inspect(name, 0, 0)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    content = reply["content"]
    return {"status": content["status"], "found": content["found"],
            "text": normalise(content["data"].get("text/plain", ""), cwd)}


def background_answer(kc: Any, timeout: float = 60) -> Any:
    """The rows a background-answering request hands over in its display update (a local kernel may send it after
    the reply)."""
    msg_id = kc.execute(BACKGROUND, store_history=False)
    display_id = None
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        content = msg["content"]
        if msg["msg_type"] == "display_data" and msg["parent_header"].get("msg_id") == msg_id \
                and BACKGROUND_MIME in content["data"]:
            display_id = content["transient"]["display_id"]
        elif msg["msg_type"] == "update_display_data" and display_id is not None \
                and content["transient"].get("display_id") == display_id:
            answer = content["data"][BACKGROUND_MIME + ".result"]
            break
    while kc.get_shell_msg(timeout=timeout)["parent_header"].get("msg_id") != msg_id:
        pass
    return answer


def shell_replies(kc: Any, msg_ids: list[str], timeout: float = 120) -> list[tuple[str, dict]]:
    """(msg_id, content) of the replies to ``msg_ids``, in the order they arrived."""
    replies = []
    while len(replies) < len(msg_ids):
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") in msg_ids:
            replies.append((msg["parent_header"]["msg_id"], msg["content"]))
    return replies


def subshell(kc: Any) -> str:
    """A new subshell of the kernel (ipykernel 7; a front end may send requests there while a cell runs)."""
    kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
    reply = kc.control_channel.get_msg(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["subshell_id"]


def execute_in(kc: Any, subshell_id: str, code: str, **content: Any) -> str:
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": False,
                                             "user_expressions": {}, "allow_stdin": False,
                                             "stop_on_error": False, **content})
    msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


@pytest.fixture
def vs_pair(kernelspecs: Path, pool: Any) -> Iterator[tuple[Pair, str]]:
    """A stock kernel and an ACA Sessions kernel whose session identifier is known."""
    name, ident = aca_kernelspec(kernelspecs, pool.endpoint, pool.token)
    p = Pair(name)
    try:
        yield p, ident
    finally:
        p.close()


# --- start-up ---------------------------------------------------------------------------------------------------

def test_start_up_requests_stay_here_and_allocate_no_session(vs_pair, pool, tmp_path):
    p, ident = vs_pair
    notebook = tmp_path / "folder" / "analysis.ipynb"
    notebook.parent.mkdir()
    for code in (WIDGETS_PROBE, CHAT_BRIDGE, start_up_code(notebook)):
        stock, aca = p.compare(code, store_history=False)
        assert aca == stock, code
        if code == WIDGETS_PROBE:
            assert re.fullmatch(r"ipywidgets-version:8\.\S+\n", aca["outputs"][0][2])
    # before any remote cell, a silent request and the Variables view answer here, as in a local kernel
    probes = {"cwd": "__import__('os').getcwd()", "file": "__vsc_ipynb_file__", "missing": "undefined_name"}
    stock, aca = p.compare("checked = 1", silent=True, user_expressions=probes)
    assert aca == stock
    assert json.loads(aca["user_expressions"])["file"]["data"]["text/plain"] == repr(str(notebook))
    stock, aca = p.compare(VARIABLE_TYPES, store_history=False)
    assert aca == stock
    stock, aca = p.compare(variable_info("checked"), store_history=False)
    assert aca == stock
    assert inspected(p.aca[1], "checked", p.cwd) == inspected(p.stock[1], "checked", p.cwd)
    assert ident not in pool_sessions(pool)
    _, out = run(p.aca[1], "%%local\nimport os, sys\nprint(__vsc_ipynb_file__, os.getcwd(), 'vscode' in sys.modules)")
    assert text(out) == f"{notebook} {notebook.parent} True\n"

    # The first remote cell starts the session, in its own folder; the notebook's path stays this machine's.
    where = "import os, sys\nos.getcwd(), '__vsc_ipynb_file__' in globals(), 'vscode' in sys.modules"
    reply, out = run(p.aca[1], where)
    assert reply["status"] == "ok" and ident in pool_sessions(pool)
    session_side = out[-1]["content"]["data"]["text/plain"]
    assert str(notebook.parent) not in session_side and session_side.endswith(", False, False)")
    # A reconnecting window sends its set-up again: it still runs here, the session is left as it was.
    for code in (WIDGETS_PROBE, CHAT_BRIDGE, start_up_code(tmp_path / "other.ipynb")):
        reply, out = ask(p.aca[1], code)
        assert reply["status"] == "ok" and [m["msg_type"] for m in out] == (["stream"] if code == WIDGETS_PROBE
                                                                               else [])
    reply, out = run(p.aca[1], where)
    assert out[-1]["content"]["data"]["text/plain"] == session_side
    _, out = run(p.aca[1], "%%local\nimport os\nprint(__vsc_ipynb_file__, os.getcwd())")
    assert text(out) == f"{tmp_path / 'other.ipynb'} {tmp_path}\n"


# --- the Variables view -------------------------------------------------------------------------------------------

CELLS = [
    "import numpy as np\nimport pandas as pd",
    "frame = pd.DataFrame({'city': ['Oslo', 'Lima', 'Pune'], 'rain': [7.5, 0.4, 3.2]})",
    "grid = np.arange(12).reshape(3, 4)",
    "settings = {'region': 'westus2', 'retries': 3, 'tags': ['a', 'b']}",
    "class Point:\n    'A point in the plane.'\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n\n"
    "origin = Point(0, 0)",
]


def test_variables_view_sees_the_session(vs_pair):
    p, _ident = vs_pair
    for code in CELLS:
        stock, aca = p.compare(code)
        assert aca == stock, code
    stock, aca = p.compare(VARIABLE_TYPES, store_history=False)
    assert aca == stock
    rows = json.loads(aca["outputs"][0][2])
    assert [(r["name"], r["type"]) for r in rows] == [
        ("Point", "type"), ("frame", "DataFrame"), ("grid", "ndarray"), ("np", "module"), ("origin", "Point"),
        ("pd", "module"), ("settings", "dict")]
    for name in ("frame", "grid", "settings", "origin", "Point", "np"):
        assert inspected(p.aca[1], name, p.cwd) == inspected(p.stock[1], name, p.cwd), name
        stock, aca = p.compare(variable_info(name), store_history=False)
        assert aca == stock, name
    assert printed_json(p.aca[1], variable_info("frame")) == {"type": "DataFrame", "shape": "(3, 2)", "count": 3}
    stock_rows, aca_rows = background_answer(p.stock[1]), background_answer(p.aca[1])
    assert normalise(json.dumps(aca_rows), p.cwd) == normalise(json.dumps(stock_rows), p.cwd)
    assert "<__main__.Point object at 0x" in next(r["value"] for r in aca_rows if r["name"] == "origin")
    # none of it went into the history or moved the execution count
    for code in ("_i", "len(In)", "%history -l 2", "_ii"):
        stock, aca = p.compare(code)
        assert aca == stock, code


def test_data_viewer_pages_a_large_frame(vs_pair):
    p, _ident = vs_pair
    stock, aca = p.compare(
        "import numpy as np\nimport pandas as pd\nrng = np.random.default_rng(7)\n"
        "big = pd.DataFrame({'id': np.arange(10_000), 'value': rng.normal(size=10_000).round(6),\n"
        "                    'label': [f'row {i}' for i in range(10_000)]})\n"
        "series, array, records = big['value'], big[['id', 'value']].to_numpy(), big.head(120).to_dict('records')")
    assert aca == stock
    requests = [data_viewer("info", "big"), data_viewer("rows", "big", 0, 50),
                data_viewer("rows", "big.sort_values('value', ascending=False)", 0, 50),
                data_viewer("rows", "big", 9_950, 10_000)]
    for expression in ("series", "array", "records"):
        requests += [data_viewer("info", expression), data_viewer("rows", expression, 0, 50)]
    for code in requests:
        stock, aca = p.compare(code, store_history=False)
        assert aca == stock, code
    info = printed_json(p.aca[1], data_viewer("info", "big"))
    assert info["rowCount"] == 10_000 and [c["key"] for c in info["columns"]] == ["id", "value", "label"]
    page = printed_json(p.aca[1], data_viewer("rows", "big.sort_values('value', ascending=False)", 0, 50))
    values = [row[1] for row in page["data"]]
    assert len(values) == 50 and values == sorted(values, reverse=True)


def test_named_sessions_leave_the_variables_view_on_the_default_session(kernelspecs, pool):
    name, ident = aca_kernelspec(kernelspecs, pool.endpoint, pool.token)
    km, kc = start_new_kernel(kernel_name=name)
    try:
        reply, _ = run(kc, "%%aca --session etl\nelsewhere = 1")
        assert reply["status"] == "ok"
        # the default session is not started: the view answers here, and allocates nothing
        assert printed_json(kc, VARIABLE_TYPES) == []
        assert ident not in pool_sessions(pool)
        run(kc, "here = 2")
        run(kc, "%%aca --session etl\nalso_elsewhere = 3")
        assert [r["name"] for r in printed_json(kc, VARIABLE_TYPES)] == ["here"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --- a variable inspector's helpers, defined once at start ---------------------------------------------------

INSPECTOR_SETUP = """import json
from IPython import get_ipython

_test_inspector_shell = get_ipython()


def _test_inspector_list():
    names = _test_inspector_shell.run_line_magic("who_ls", "")
    return json.dumps([{"varName": n, "varType": type(_test_inspector_shell.user_ns[n]).__name__} for n in names])
"""


def test_a_variable_inspector_s_helpers_follow_the_session(vs_pair, pool):
    # JupyterLab's variable inspector defines its helpers with one silent request when the kernel starts, then
    # calls them after every cell (store_history: false) and reads the execute_result.
    p, ident = vs_pair
    stock, aca = p.compare(INSPECTOR_SETUP, silent=True)
    assert aca == stock
    assert ident not in pool_sessions(pool)
    for code in ("a = 1", "import pandas as pd\nframe = pd.DataFrame({'x': [1, 2]})"):
        stock, aca = p.compare(code)
        assert aca == stock
        stock, aca = p.compare("_test_inspector_list()", store_history=False)
        assert aca == stock and aca["status"] == "ok"
    assert "DataFrame" in aca["outputs"][0][2]
    # a new session (as after a recycle) gets them again with the first request sent there
    _, kc = p.aca
    run(kc, "%aca_new_session")
    run(kc, "b = 2")
    reply, out = ask(kc, "_test_inspector_list()")
    assert reply["status"] == "ok"
    assert [v["varName"] for v in json.loads(eval(out[0]["content"]["data"]["text/plain"]))] == ["b", "get_ipython", "json"]


# --- busy, unreachable and lost sessions ------------------------------------------------------------------------

def test_requests_during_a_remote_cell_wait_for_it(vs_pair):
    p, _ident = vs_pair
    seen = {}
    for side, (_km, kc) in (("stock", p.stock), ("aca", p.aca)):
        cell = kc.execute("import time\ntime.sleep(2)\nslow = 'done'\nprint('cell ran')")
        probe = kc.execute("", silent=True, user_expressions={"slow": "slow"})
        listing = kc.execute(VARIABLE_TYPES, store_history=False)
        replies = shell_replies(kc, [cell, probe, listing])
        assert [msg_id for msg_id, _ in replies] == [cell, probe, listing]  # in turn, the cell first
        assert replies[0][1]["status"] == "ok"
        seen[side] = (replies[1][1]["user_expressions"], replies[2][1]["status"])
    assert seen["aca"] == seen["stock"]
    assert seen["aca"][0]["slow"]["data"]["text/plain"] == "'done'"
    stock, aca = p.compare("slow")
    assert aca == stock


@pytest.mark.emulator_only
def test_a_subshell_request_during_a_remote_cell_is_answered_empty_at_once(kernelspecs, pool):
    from aca_kernel import SessionsClient

    name, ident = aca_kernelspec(kernelspecs, pool.endpoint, pool.token)
    km, kc = start_new_kernel(kernel_name=name)
    try:
        run(kc, "ready = 1\nimport os")
        sub = subshell(kc)
        # the cell waits for a file the test writes once the subshell's answers are in: no timing involved
        cell = kc.execute("import time\nwhile not os.path.exists('release.flag'):\n    time.sleep(0.05)\n"
                          "print('released')")
        while not (msg := kc.get_iopub_msg(timeout=60))["msg_type"] == "execute_input" \
                or msg["parent_header"].get("msg_id") != cell:
            pass
        listing = execute_in(kc, sub, VARIABLE_TYPES)
        probe = execute_in(kc, sub, "", silent=True, user_expressions={"ready": "ready"})
        replies = dict(shell_replies(kc, [listing, probe]))  # the cell has not ended: it waits for the file
        assert replies[listing]["status"] == "ok" and replies[probe]["status"] == "ok"
        assert replies[probe]["user_expressions"]["ready"]["ename"] == "SessionUnavailable"
        assert replies[probe]["user_expressions"]["ready"]["evalue"] == "a cell is running"  # not sent there
        with SessionsClient(pool.endpoint, pool.token, session_id=ident) as client:
            client.upload_file(b"go", "release.flag")
        (_, cell_reply), = shell_replies(kc, [cell])
        assert cell_reply["status"] == "ok"
        seen = _iopub_until_idle(kc, cell)  # the subshell's messages came while the cell ran, before its end
        assert text([m for m in seen if m["parent_header"].get("msg_id") == cell and m["msg_type"] == "stream"]) \
            == "released\n"
        assert not [m for m in seen if m["parent_header"].get("msg_id") in (listing, probe)
                    and m["msg_type"] in ("stream", "error", "display_data", "execute_result")]
        # once the cell has ended, the subshell's requests are answered from the session
        listing = execute_in(kc, sub, VARIABLE_TYPES)
        (_, reply), = shell_replies(kc, [listing])
        assert reply["status"] == "ok"
        out = [m for m in _iopub_until_idle(kc, listing) if m["parent_header"].get("msg_id") == listing]
        assert json.loads(text(out)) == [
            {"name": "os", "type": "module", "fullType": "builtins.module"},
            {"name": "ready", "type": "int", "fullType": "builtins.int"},
            {"name": "time", "type": "module", "fullType": "builtins.module"}]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _iopub_until_idle(kc: Any, msg_id: str, timeout: float = 60) -> list[dict]:
    """Every iopub message (of any request) up to the idle status of ``msg_id``."""
    msgs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" \
                and msg["content"]["execution_state"] == "idle":
            return msgs
        msgs.append(msg)


def _executes(pool: Any) -> int:
    return sum("/code/execute" in line for line in pool.output)  # the pool logs each request it served


def test_one_round_trip_each_and_quiet_when_unreachable(kernelspecs, make_pool):
    private = make_pool("--log-level", "info")
    name, _ident = aca_kernelspec(kernelspecs, private.endpoint, private.token, ACA_HOUSEKEEPING_TIMEOUT="5")
    km, kc = start_new_kernel(kernel_name=name)
    try:
        reply, _ = run(kc, "x = 1")
        assert reply["status"] == "ok" and reply["execution_count"] == 1
        assert wait_until(lambda: _executes(private) == 1)
        assert printed_json(kc, VARIABLE_TYPES) == [{"name": "x", "type": "int", "fullType": "builtins.int"}]
        reply, _ = run(kc, "", silent=True, user_expressions={"x": "x"})
        assert reply["user_expressions"]["x"]["data"]["text/plain"] == "1"
        run(kc, "y = 2")  # a cell after them: its request is logged after theirs
        assert wait_until(lambda: _executes(private) >= 4)
        assert _executes(private) == 4
        private.stop()
        reply, out = ask(kc, VARIABLE_TYPES)
        assert (reply["status"], reply["execution_count"], out) == ("ok", 2, [])
        reply, out = run(kc, "", silent=True, user_expressions={"x": "x"})
        assert reply["status"] == "ok" and out == []
        assert reply["user_expressions"]["x"]["status"] == "error"
        assert reply["user_expressions"]["x"]["ename"] == "SessionUnavailable"
        # the user's own cell still says what is wrong, and counts
        reply, out = run(kc, "x + 1")
        assert reply["status"] == "error" and reply["execution_count"] == 3
        assert [m["msg_type"] for m in out] == ["error"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("cooldown_known", [True, False], ids=["cooldown-known", "cooldown-unknown"])
def test_a_lost_session_is_told_by_the_next_cell(kernelspecs, make_pool, cooldown_known):
    short = make_pool("--cooldown", "2", "--ready", "0")
    env = {"ACA_COOLDOWN": "2"} if cooldown_known else {}
    name, ident = aca_kernelspec(kernelspecs, short.endpoint, short.token, **env)
    km, kc = start_new_kernel(kernel_name=name)
    try:
        reply, _ = run(kc, "base = 41")
        assert reply["status"] == "ok"
        time.sleep(5)  # idle past the pool's 2 s cooldown: the session is recycled
        assert wait_until(lambda: ident not in pool_sessions(short), timeout=30)
        reply, out = ask(kc, VARIABLE_TYPES)
        assert reply["status"] == "ok" and out == []  # quiet, and nothing installed or run in its place
        if cooldown_known:  # the kernel knows the session has ended: asking it would allocate a new one
            assert ident not in pool_sessions(short)
        # Once the state is known to be lost, a front end's refreshes allocate nothing either.
        if ident in pool_sessions(short):
            from aca_kernel import SessionsClient

            with SessionsClient(short.endpoint, short.token, api_version="2025-02-02-preview",
                                session_id=ident) as client:
                client.delete_session()
        reply, out = ask(kc, VARIABLE_TYPES)
        assert reply["status"] == "ok" and out == [] and ident not in pool_sessions(short)
        reply, out = run(kc, "base + 1")
        assert reply["status"] == "error" and reply["ename"] == "NameError"
        notice = text(out, "stderr")
        assert "was recycled" in notice and "1 cell(s)" in notice
        assert printed_json(kc, VARIABLE_TYPES) == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_background_cell_is_not_waited_for(kernelspecs, pool):
    # A long housekeeping timeout: waiting behind the background cell would show as a run of the request.
    name, _ident = aca_kernelspec(kernelspecs, pool.endpoint, pool.token, ACA_HOUSEKEEPING_TIMEOUT="120")
    km, kc = start_new_kernel(kernel_name=name)
    try:
        reply, _ = run(kc, "import time\nseen = []")
        assert reply["status"] == "ok"
        reply, _ = run(kc, "%%aca --background\ntime.sleep(60)\nseen.append('background')")
        assert reply["status"] == "ok"
        reply, out = ask(kc, "seen.append('request')\nprint(seen)", user_expressions={"n": "len(seen)"})
        assert reply["status"] == "ok" and out == []
        assert reply["user_expressions"]["n"]["evalue"] == "a background cell is running in the session"
        stopped, out = run(kc, "%aca_jobs --stop 1")
        assert stopped["status"] == "ok" and "did not stop" not in text(out), text(out)
        reply, out = ask(kc, "print(seen)")
        assert text(out).strip() == "[]"  # the request never ran in the session; the stopped cell did not finish
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
