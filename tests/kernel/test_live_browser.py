"""Live output and the stop button in a real JupyterLab and a real (headless Debian) chromium, on the local pool.

A cell that prints a progress line each second shows the lines while it still runs; the stop button interrupts a
`time.sleep(120)` in the session (KeyboardInterrupt, with the traceback pointing at the sleep) and the next cell
sees the earlier variables at once. Screenshot: ``artifacts/live-output.png``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.files.test_browser import _KERNEL_READY, ARTIFACTS, CHROMIUM, Lab, lab, run_cell  # noqa: F401 (fixture)

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
    from playwright.sync_api import expect, sync_playwright

    name = write_notebook(lab.root)
    shot = ARTIFACTS / "live-output.png"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        try:
            page.set_default_timeout(60_000)
            page.goto(f"{lab.url}/lab/workspaces/t{uuid.uuid4().hex[:8]}/tree/{name}?reset&token={lab.token}")
            page.wait_for_function(_KERNEL_READY, timeout=90_000)
            cells = page.locator(".jp-NotebookPanel .jp-Cell")
            run_cell(page, 0)
            expect(cells.nth(0).locator(".jp-InputPrompt")).to_contain_text("[1]", timeout=90_000)

            run_cell(page, 1)
            output = cells.nth(1).locator(".jp-OutputArea")
            expect(output).to_contain_text("progress 2", timeout=30_000)
            # still running: its prompt shows [*] while the lines come in
            expect(cells.nth(1).locator(".jp-InputPrompt")).to_contain_text("[*]")
            seen_running = output.inner_text()
            assert "progress 9" not in seen_running
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
        finally:
            browser.close()
