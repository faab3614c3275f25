"""A notebook run headless through nbclient with the ACA Sessions kernel, as CI and papermill would."""

from __future__ import annotations

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
