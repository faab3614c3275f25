"""Parity: the same cells on a stock ipykernel and on "ACA Sessions" (local pool) give the same messages.

Each case is a short run of cells, sent in order to both kernels through jupyter_client. For every cell the reply
(status, ename, evalue, execution count, payloads, user expressions) and the iopub outputs (type, stream name,
MIME types, normalised text) must be equal. Normalising removes only what differs between any two runs or
machines: memory addresses, timings, ipykernel's temporary cell file names, the working directory (the session's
is /mnt/data) and the home directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import wait_until
from jupyter_client.manager import start_new_kernel

from .helpers import run
from .normalise import normalise


def summary(kc: Any, code: str, cwd: str, **kwargs: Any) -> dict[str, Any]:
    """What a user sees of one cell, normalised; consecutive stream messages of one name are joined."""
    reply, messages = run(kc, code, timeout=120, allow_stdin=False, **kwargs)
    items: list[list[Any]] = []
    for msg in messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            if items and items[-1][:2] == ["stream", content["name"]]:
                items[-1][2] += content["text"]
            else:
                items.append(["stream", content["name"], content["text"]])
        elif kind in ("display_data", "update_display_data", "execute_result"):
            data = content["data"]
            text = {m: data[m] for m in ("text/plain", "text/html", "text/markdown", "text/latex") if m in data}
            items.append([kind, sorted(data), json.dumps(text, sort_keys=True), content.get("execution_count"),
                          sorted(content.get("transient") or {})])
        elif kind == "error":
            items.append(["error", content["ename"], content["evalue"], "\n".join(content["traceback"])])
        elif kind == "clear_output":
            items.append(["clear_output", content["wait"]])
    payload = [{k: json.dumps(v, sort_keys=True) for k, v in p.items()} for p in reply.get("payload", [])]
    return _normalised({
        "status": reply["status"], "ename": reply.get("ename"), "evalue": reply.get("evalue"),
        "execution_count": reply.get("execution_count"), "payload": payload,
        "user_expressions": json.dumps(reply.get("user_expressions", {}), sort_keys=True),
        "outputs": items,
    }, cwd)


def _normalised(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return normalise(value, cwd)
    if isinstance(value, list):
        return [_normalised(v, cwd) for v in value]
    if isinstance(value, dict):
        return {k: _normalised(v, cwd) for k, v in value.items()}
    return value


class Pair:
    """A stock python3 kernel and an ACA Sessions kernel, fed the same cells."""

    def __init__(self, aca_kernel: str = "aca_test") -> None:
        self.cwd = tempfile.mkdtemp(prefix="parity-")
        self.stock = start_new_kernel(kernel_name="python3", cwd=self.cwd)
        self.aca = start_new_kernel(kernel_name=aca_kernel)

    def compare(self, code: str, **kwargs: Any) -> tuple[dict, dict]:
        return summary(self.stock[1], code, self.cwd, **kwargs), summary(self.aca[1], code, self.cwd, **kwargs)

    def close(self) -> None:
        for km, kc in (self.stock, self.aca):
            kc.stop_channels()
            km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p
    finally:
        p.close()


# (what it shows, the cells); the cases run in this order in one pair of kernels, so prompt numbers agree.
CASES = [
    ("controls", ["print('hi')\nimport sys\nprint('err', file=sys.stderr)\n40 + 2",
                  "from IPython.display import display, Markdown, HTML\n"
                  "display(Markdown('**m**'))\nprint('between')\ndisplay(HTML('<i>h</i>'), display_id='d1')\n3",
                  "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
                  "import asyncio\nawait asyncio.sleep(0)\n'awaited'",
                  "!echo from a shell", "%timeit -n1 -r1 pass", "x = None\nx", "print(1)\n;", "1;"]),
    ("cell magics see the session", ["x = 41", "%%time\nx + 1", "%%timeit -n1 -r1\nx + 1",
                                     "%%capture cap\nprint('hidden')\nx", "cap.stdout",
                                     "%%writefile mymod.py\nVALUE = 3\n", "import mymod\nmymod.VALUE",
                                     "%%bash\necho hi from bash", "%%html\n<b>bold</b>",
                                     "%%javascript\nconsole.log(1)"]),
    ("magic-only cells apply in the session", ["%load_ext autoreload", "%autoreload 2",
                                               "%config InlineBackend.figure_format = 'svg'",
                                               "import matplotlib.pyplot as plt\nplt.plot([1, 2]);",
                                               "%config InlineBackend.figure_format = 'png'"]),
    ("streams stay valid across cells", ["import logging\nlog = logging.getLogger('parity')\n"
                                         "log.addHandler(logging.StreamHandler())\nlog.warning('one')",
                                         "log.warning('two')", "import sys\nsaved = sys.stdout",
                                         "print('via saved', file=saved)", "print('x', file=sys.__stdout__)"]),
    ("showtraceback keeps the cell going", [
        "try:\n    1/0\nexcept Exception:\n    get_ipython().showtraceback()\nprint('after')",
        "for e in (ValueError('a'), KeyError('b')):\n    try:\n        raise e\n    except Exception:\n"
        "        get_ipython().showtraceback()\nprint('done')",
        "%%writefile bad.py\nprint('start')\nraise RuntimeError('in script')\n", "%run bad.py", "print('next')"]),
    ("payloads", ["%%writefile snippet.py\ny = 5\n", "%load snippet.py",
                  "def documented():\n    'Some docs.'\n    return 1", "documented?", "documented??",
                  "from IPython.core.page import page as bound_page\nbound_page('paged text')",
                  "get_ipython().set_next_input('next input')"]),
    ("tracebacks name the prompt", ["def f():\n    return 1 / 0", "f()", "print('x'); 1/0", "undefined_name",
                                    "def g(:\n    pass", "%run no_such_script.py", "raise SystemExit(3)",
                                    "%no_such_magic", "%%no_such_cell_magic\nx"]),
    ("figures in stock order", ["import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])", "plt.plot([1, 2]);",
                                "fig = plt.figure()\nplt.close(fig)\n'closed'",
                                "plt.plot([1]); plt.show(); 'after show'",
                                "import matplotlib\nmatplotlib.use('agg')\nplt.plot([3]); plt.show()",
                                "%matplotlib inline\nplt.plot([4])"]),
    ("stdin", ["input('name? ')", "%debug"]),
    ("the session's machine", ["import os\nos.cpu_count()",
                               "import warnings\nwarnings.simplefilter('always')\n"
                               "from joblib import cpu_count\ncpu_count(only_physical_cores=True) > 0"]),
]


@pytest.mark.parametrize("name, cells", CASES, ids=[c[0] for c in CASES])
def test_same_outputs_as_a_local_kernel(pair, name, cells):
    for code in cells:
        stock, aca = pair.compare(code)
        assert aca == stock, f"cell {code!r} differs"


def test_history_is_the_notebook_s(pair):
    stock, aca = pair.compare("a = 1\na")
    assert aca == stock
    n = aca["execution_count"]
    for code in ("_i", "In[-1]", "%history -l 1", "_", f"Out[{n}]", f"_{n}", f"_i{n}", "__", "len(In) - 1"):
        stock, aca = pair.compare(code)
        assert aca == stock, f"cell {code!r} differs"


def test_user_expressions_and_unstored_cells(pair):
    for kwargs in ({"user_expressions": {"a": "1 + 1", "b": "undefined_thing"}}, {"store_history": False}):
        stock, aca = pair.compare("z = 5\nz", **kwargs)
        assert aca == stock, kwargs
    stock, aca = pair.compare("z")
    assert aca == stock


def test_exit_ends_the_kernel_as_locally():
    p = Pair()
    try:
        stock, aca = p.compare("exit")
        assert aca == stock and [x["source"] for x in aca["payload"]] == ['"ask_exit"']
        assert wait_until(lambda: not p.stock[0].is_alive() and not p.aca[0].is_alive(), timeout=30)
    finally:
        p.close()


def test_kernel_info_reports_the_sessions_python(pair):
    _km, kc = pair.aca
    kc.execute_interactive("import sys, platform", timeout=60)
    # Stand in for a session on another Python: the runtime reports platform.python_version() when it installs.
    code = ("import platform\nplatform.python_version = lambda: '3.99.1'\n"
            "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('_aca_runtime_')];")
    reply = kc.execute_interactive(code, timeout=60)
    assert reply["content"]["status"] == "ok"
    kc.execute_interactive("1", timeout=60)  # finds the runtime missing, installs it again
    info = kc.kernel_info(reply=True, timeout=30)["content"]
    assert info["language_info"]["version"] == "3.99.1"
    assert info["language_info"]["name"] == "python"
    assert "debugger" not in info.get("supported_features", [])  # it could not stop in the session's code


def test_magic_in_a_stock_kernel_matches_too(pool, tmp_path):
    # %%aca inside a stock kernel shows what the cell body shows on the ACA Sessions kernel.
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path),
                              env={**os.environ, "ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint,
                                   "ACA_TOKEN": pool.token or "", "ACA_PROGRESS_AFTER": "60"})
    p = Pair()
    try:
        run(kc, "%load_ext aca_sessions")
        run(p.aca[1], "1")  # both now at the same prompt number
        for code in ("x = 2\nprint('a')\nx * 21", "import matplotlib.pyplot as plt\nplt.plot([1, 2])",
                     "try:\n    1/0\nexcept Exception:\n    get_ipython().showtraceback()\nprint('after')",
                     "def f():\n    return 1/0\nf()", "_i", "%%time\nx"):
            magic = summary(kc, "%%aca\n" + code, p.cwd)
            kernel = summary(p.aca[1], code, p.cwd)
            for item in magic["outputs"]:
                if item[0] == "error":  # IPython shows a magic's error with the magic's own first frames
                    item[3] = item[3].split("\n")[-1]
            for item in kernel["outputs"]:
                if item[0] == "error":
                    item[3] = item[3].split("\n")[-1]
            magic.pop("payload"), kernel.pop("payload")
            assert magic == kernel, f"cell {code!r} differs"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        p.close()
