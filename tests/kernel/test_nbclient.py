"""A notebook run headless through nbclient with the ACA Sessions kernel, as CI and papermill would."""

from __future__ import annotations

import re
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_notebook_runs_and_keeps_outputs():
    nb = _notebook("x = 20\nprint('ready')", "x * 2", "%%local\nprint('here')",
                   "import matplotlib.pyplot as plt\nplt.plot([1, 2])")
    NotebookClient(nb, timeout=120, kernel_name="aca_test").execute()
    outs = [c.outputs for c in nb.cells]
    assert outs[0][0]["text"] == "ready\n"
    assert outs[1][0]["output_type"] == "execute_result" and outs[1][0]["data"]["text/plain"] == "40"
    assert outs[2][0]["text"] == "here\n"
    # as in a local kernel: the value first, then the figure the inline backend shows at the end of the cell
    assert [o["output_type"] for o in outs[3]] == ["execute_result", "display_data"]
    assert "Line2D" in outs[3][0]["data"]["text/plain"] and "image/png" in outs[3][1]["data"]


def test_error_cell_stops_the_run_with_the_remote_ename():
    nb = _notebook("1/0", "print('never')")
    with pytest.raises(CellExecutionError) as info:
        NotebookClient(nb, timeout=120, kernel_name="aca_test").execute()
    assert info.value.ename == "ZeroDivisionError"
    assert nb.cells[1].execution_count is None


class _TimedClient(NotebookClient):
    """Notes when each output reaches the notebook (nbclient records them as the kernel sends them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorded: list[tuple[float, int, dict]] = []  # (time.time(), cell index, output)

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None:
            self.recorded.append((time.time(), cell_index, out))
        return out


def test_output_is_recorded_while_the_cell_runs():
    printing = ("import time\n"
                "for i in range(8):\n"
                "    print(f'line {i} at {time.time():.3f}', flush=True)\n"
                "    time.sleep(0.5)")
    nb = _notebook("1", printing)
    ended: list[float] = []
    client = _TimedClient(nb, timeout=120, kernel_name="aca_test",
                          on_cell_executed=lambda cell_index, **_: ended.append(time.time()))
    client.execute()
    lines = "".join(o["text"] for o in nb.cells[1].outputs if o["output_type"] == "stream").splitlines()
    assert [ln.split(" at ")[0] for ln in lines] == [f"line {i}" for i in range(8)]  # all, in order, once
    printed = [float(ln.split(" at ")[1]) for ln in lines]
    streams = [(at, out) for at, index, out in client.recorded if index == 1 and out["output_type"] == "stream"]
    first_recorded = streams[0][0]
    assert streams[0][1]["text"].startswith("line 0 at ")
    # The first line was in the notebook before the cell printed its last one (the session's clock is this
    # machine's on the local pool), and so well before the cell ended.
    assert first_recorded < printed[-1] < ended[-1], (first_recorded, printed, ended)
    assert len(streams) >= 3  # in several pieces, as it was printed


def test_interrupt_on_timeout_stops_the_remote_cell():
    # papermill and nbclient stop a cell that runs too long with interrupt_on_timeout: the remote sleep must end
    # there, not hold the next cell until it finishes (it would then have set `finished`).
    nb = _notebook("x = 1", "import time\ntime.sleep(30)\nfinished = True", "print('finished' in dir(), x)")
    client = NotebookClient(nb, kernel_name="aca_test", allow_errors=True, interrupt_on_timeout=True,
                            timeout_func=lambda cell: 3 if "sleep" in cell.source else 120)
    client.execute()
    error = nb.cells[1].outputs[-1]
    assert error["output_type"] == "error" and error["ename"] == "KeyboardInterrupt"
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert "----> 2 time.sleep(30)" in traceback  # stopped in the session, where it slept
    assert nb.cells[2].outputs[0]["text"] == "False 1\n"
