"""Live output and the stop button in a real JupyterLab and a real (headless Debian) chromium, on the local pool.

A cell that prints a progress line each second shows the lines while it still runs; the stop button interrupts a
`time.sleep(120)` in the session (KeyboardInterrupt, with the traceback pointing at the sleep) and the next cell
sees the earlier variables at once. Screenshot: ``artifacts/live-output.png``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.files.test_browser import ARTIFACTS, CHROMIUM, Lab, lab, notebook_page, run_cell  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def write_notebook(root: Path) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "aca_sessions", "display_name": "ACA Sessions (test)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (
        "kept = 5",
        "import time\nfor i in range(10):\n    print(f'progress {i}', flush=True)\n    time.sleep(1)",
        "import time\ntime.sleep(120)",
        "kept * 2",
    )]
    nbformat.write(nb, root / "live.ipynb")
    return "live.ipynb"


def test_progress_appears_while_the_cell_runs_and_stop_stops_it(lab: Lab) -> None:  # noqa: F811
    from playwright.sync_api import expect

    name = write_notebook(lab.root)
    shot = ARTIFACTS / "live-output.png"
    ARTIFACTS.mkdir(exist_ok=True)
    with notebook_page(lab, name, width=1200, height=900) as page:
        try:
            cells = page.locator(".jp-NotebookPanel .jp-Cell")
            run_cell(page, 0)
            expect(cells.nth(0).locator(".jp-InputPrompt")).to_contain_text("[1]", timeout=90_000)

            run_cell(page, 1)
            output = cells.nth(1).locator(".jp-OutputArea")
            expect(output).to_contain_text("progress 2", timeout=30_000)
            # still running: its prompt shows [*] while the lines come in
            expect(cells.nth(1).locator(".jp-InputPrompt")).to_contain_text("[*]")
            assert "progress 9" not in output.inner_text()
            expect(output).to_contain_text("progress 9", timeout=30_000)
            expect(cells.nth(1).locator(".jp-InputPrompt")).to_contain_text("[2]")

            run_cell(page, 2)
            expect(cells.nth(2).locator(".jp-InputPrompt")).to_contain_text("[*]")
            page.wait_for_timeout(2000)
            page.locator("jp-button[data-command='notebook:interrupt-kernel'], "
                         "button[data-command='notebook:interrupt-kernel']").first.click()
            stopped = cells.nth(2).locator(".jp-OutputArea")
            expect(stopped).to_contain_text("KeyboardInterrupt", timeout=20_000)
            expect(stopped).to_contain_text("time.sleep(120)")

            run_cell(page, 3)
            expect(cells.nth(3).locator(".jp-OutputArea")).to_contain_text("10", timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
        except Exception:
            page.screenshot(path=str(shot.with_name(shot.stem + "-failed.png")), full_page=True)
            raise
