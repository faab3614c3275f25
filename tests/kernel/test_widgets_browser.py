"""Widgets made in the session, in a real JupyterLab and a real (headless Debian) chromium, against the local pool.

An ``interact`` slider made in the session is dragged with the mouse; the remote function's output in the
notebook follows the new value (the Output widget inside ``interact`` captures what the session printed for
the forwarded change). A ``tqdm.auto`` bar over 5 steps renders as the widget bar and ends at 100%. After
ipywidgets is imported in the local kernel too, the page is reloaded: the session's widgets come back with their
state and still work. Both faces:
a notebook on the ACA Sessions kernel, and a python3 notebook with ``%load_ext aca_sessions`` and ``%%aca``
cells. Screenshots go to ``artifacts/widgets-interact*.png``.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from files.test_browser import _KERNEL_READY, ARTIFACTS, CHROMIUM, Lab, lab  # noqa: F401  (lab: the fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

INTERACT = ("from ipywidgets import interact\n\n"
            "@interact(x=(0, 10))\n"
            "def f(x=3):\n"
            "    print(f'remote says {x * 11}')")
TQDM = "from tqdm.auto import tqdm\nimport time\nfor i in tqdm(range(5)):\n    time.sleep(0.05)"


def write_notebook(root: Path, use_aca_kernel: bool) -> tuple[str, int]:
    """The notebook and the index of its interact cell."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    if use_aca_kernel:
        nb.metadata["kernelspec"] = {"name": "aca_sessions", "display_name": "ACA Sessions (test)",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(INTERACT), nbformat.v4.new_code_cell(TQDM),
                    nbformat.v4.new_code_cell("%%local\nimport ipywidgets")]
    else:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("%load_ext aca_sessions"),
                    nbformat.v4.new_code_cell("%%aca\n" + INTERACT), nbformat.v4.new_code_cell("%%aca\n" + TQDM),
                    nbformat.v4.new_code_cell("import ipywidgets")]
    name = f"widgets-{uuid.uuid4().hex[:6]}.ipynb"
    nbformat.write(nb, root / name)
    return name, 0 if use_aca_kernel else 1


def run_cell(page, index: int) -> None:
    page.locator(".jp-NotebookPanel .jp-Cell").nth(index).locator(".cm-content").click()
    page.keyboard.press("Control+Enter")


@pytest.mark.parametrize("face", ["aca_kernel", "load_ext"])
def test_dragging_an_interact_slider_reruns_the_remote_function(lab: Lab, face: str) -> None:  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    use_aca_kernel = face == "aca_kernel"
    nb_name, first = write_notebook(lab.root, use_aca_kernel)
    shot = ARTIFACTS / ("widgets-interact.png" if use_aca_kernel else "widgets-interact-load-ext.png")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{lab.url}/lab/workspaces/t{uuid.uuid4().hex[:8]}/tree/{nb_name}?reset&token={lab.token}")
            page.wait_for_function(_KERNEL_READY, timeout=90_000)
            for index in range(first + 1):
                run_cell(page, index)
            cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(first)
            slider = cell.locator(".widget-slider .noUi-target")
            expect(slider).to_be_visible(timeout=90_000)  # the widget itself, not its text repr
            printed = cell.locator(".widget-output .jp-RenderedText")  # inside interact's Output widget
            expect(printed).to_have_text(re.compile(r"remote says 33"))

            # drag the handle to the right end of the track, with the mouse
            handle, track = cell.locator(".noUi-handle").first.bounding_box(), slider.bounding_box()
            assert handle and track
            page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
            page.mouse.down()
            steps = 12
            start, end = handle["x"] + handle["width"] / 2, track["x"] + track["width"] + 20
            for i in range(1, steps + 1):
                page.mouse.move(start + (end - start) * i / steps, handle["y"] + handle["height"] / 2)
            page.mouse.up()
            readout = cell.locator(".widget-readout").first
            expect(readout).to_have_text("10")
            # the session ran f(10); its print landed in interact's Output widget, the old one cleared
            expect(printed).to_have_text(re.compile(r"remote says 110"))

            # one step back with the keyboard: another round trip, another run
            cell.locator(".noUi-handle").first.focus()
            page.keyboard.press("ArrowLeft")
            expect(readout).to_have_text("9")
            expect(printed).to_have_text(re.compile(r"remote says 99"))

            run_cell(page, first + 1)
            bar_cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(first + 1)
            expect(bar_cell.locator(".widget-hprogress")).to_be_visible(timeout=90_000)
            expect(bar_cell.locator(".widget-html-content", has_text="100%")).to_be_visible()
            expect(bar_cell.locator(".widget-html-content", has_text=re.compile(r"5/5"))).to_be_visible()
            expect(bar_cell.locator(".progress-bar-success")).to_have_count(1)
            page.screenshot(path=str(shot), full_page=True)

            # ipywidgets imported here as well (it then answers a reloaded page for all widgets); save, reload
            run_cell(page, first + 2)
            expect(page.locator(".jp-NotebookPanel .jp-Cell").nth(first + 2).locator(".jp-InputPrompt")) \
                .to_have_text(re.compile(r"\[\d+\]"))
            page.keyboard.press("Control+s")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
            page.reload()
            page.wait_for_function(_KERNEL_READY, timeout=90_000)
            cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(first)
            readout = cell.locator(".widget-readout").first
            expect(readout).to_have_text("9", timeout=60_000)  # the session's slider, with its state
            cell.locator(".noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")
            expect(readout).to_have_text("10")
            expect(cell.locator(".widget-output .jp-RenderedText")).to_have_text(re.compile(r"remote says 110"))
        except Exception:
            page.screenshot(path=str(shot.with_name(shot.stem + "-failed.png")), full_page=True)
            print("browser console:\n" + "\n".join(console[-40:]))
            raise
        finally:
            browser.close()
