"""The file browser in a real JupyterLab and a real (headless Debian) chromium, against the local pool.

The widget must work the same on both faces: a notebook on the ACA Sessions kernel (kernelspec in a temporary
JUPYTER_PATH, env pointing at the pool) runs ``%aca_files``, and a python3 notebook runs ``%load_ext aca_sessions``
first. Two files (a CSV and a PNG) are uploaded at
once through the widget's file input (the chooser its Upload button opens) and appear in the table; the image is
previewed inline, the CSV as a table; the CSV is downloaded by the browser through its download link and saved
into a folder on the kernel's machine, where the test finds it.
Screenshots go to ``artifacts/files-browser.png`` (ACA Sessions kernel) and ``files-browser-load-ext.png``; the
server log to ``artifacts/files-browser-lab.log``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import write_aca_kernelspec

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(lab: Lab, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({lab.proc.returncode}):\n{lab.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"jupyter lab did not answer in {timeout} s:\n{lab.log.read_text()[-3000:]}")


@pytest.fixture
def lab(pool, tmp_path: Path) -> Iterator[Lab]:
    root = tmp_path / "root"
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    for d in (root, settings, tmp_path / "ws"):
        d.mkdir(parents=True)
    # The news/update toast would cover the widget in the screenshot (testing-notes §4a).
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    pool_env = write_aca_kernelspec(tmp_path / "jupyter", pool, "browser")
    token = secrets.token_hex(16)
    port = free_port()
    env = {**os.environ, **pool_env, "JUPYTER_PATH": str(tmp_path / "jupyter"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={port}",
             f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
             f"--LabApp.user_settings_dir={tmp_path / 'settings'}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
             "--LabApp.expose_app_in_browser=True"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, proc=proc, log=log)
    try:
        wait_ready(server)
        yield server
    finally:
        # Ask the server to shut down (it stops its kernels), then make sure by PID.
        try:
            req = urllib.request.Request(f"{server.url}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(log, ARTIFACTS / "files-browser-lab.log")  # the server and kernel log, for failures


_KERNEL_READY = """() => {
  const kernel = window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


def write_notebook(root: Path, use_aca_kernel: bool) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    if use_aca_kernel:
        nb.metadata["kernelspec"] = {"name": "aca_sessions", "display_name": "ACA Sessions (test)",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("%aca_files")]
    else:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("%load_ext aca_sessions\n%aca_files")]
    name = "files.ipynb"
    nbformat.write(nb, root / name)
    return name


@pytest.mark.parametrize("face", ["aca_kernel", "load_ext"])
def test_upload_preview_and_download_in_jupyterlab(lab: Lab, pool, tmp_path: Path, face: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    use_aca_kernel = face == "aca_kernel"
    if use_aca_kernel:
        pytest.importorskip("aca_kernel.kernel.kernel", reason="the ACA Sessions kernel is not in this checkout")
    shot = ARTIFACTS / ("files-browser.png" if use_aca_kernel else "files-browser-load-ext.png")
    nb_name = write_notebook(lab.root, use_aca_kernel)
    from PIL import Image

    upload = tmp_path / "hello.csv"
    upload.write_text("city,temp\nOslo,3\nLima,19\n")
    picture = tmp_path / "chart.png"
    Image.new("RGB", (120, 60), (30, 120, 200)).save(picture)
    dest = tmp_path / "saved"
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.set_default_timeout(60_000)
            page.goto(f"{lab.url}/lab/workspaces/t{uuid.uuid4().hex[:8]}/tree/{nb_name}?reset&token={lab.token}")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            # That indicator reads 'idle' before the kernel's websocket is up, and a cell run then is lost;
            # wait until Lab itself reports the kernel connected and idle (the app is exposed for this).
            page.wait_for_function(_KERNEL_READY, timeout=90_000)
            page.click(".jp-NotebookPanel .jp-Cell .cm-content")
            page.keyboard.press("Shift+Enter")

            fb = page.locator(".aca-file-browser").first
            expect(fb).to_be_visible(timeout=90_000)
            expect(fb.locator(".aca-status")).to_contain_text("0 items in /mnt/data", timeout=60_000)
            expect(fb).not_to_contain_text(lab.token)

            # ipywidgets 8 keeps FileUpload's <input type=file> detached from the DOM and clicks it from the
            # button, so the file goes in through the file chooser that click opens.
            with page.expect_file_chooser() as chooser:
                fb.locator("button.widget-upload").click()
            chooser.value.set_files([str(upload), str(picture)])  # several files at once
            name = fb.locator(".aca-file-name", has_text="hello.csv")
            expect(name).to_be_visible()
            expect(fb.locator(".aca-file-name", has_text="chart.png")).to_be_visible()
            expect(fb.get_by_text("uploaded", exact=True)).to_have_count(2)  # one progress row per file

            fb.locator(".aca-file-name", has_text="chart.png").click()
            image = fb.locator(".widget-image")
            expect(image).to_be_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth") == 120  # decoded inline

            name.click()
            expect(fb.locator(".aca-preview")).to_contain_text("Lima")
            expect(fb.locator(".aca-preview th", has_text="city")).to_be_visible()

            fb.locator("button", has_text="Download link").click()
            link = fb.locator("a.aca-download-link")
            expect(link).to_be_visible()
            assert link.get_attribute("download") == "hello.csv"
            assert (link.get_attribute("href") or "").startswith("data:text/csv;base64,")
            with page.expect_download() as download:
                link.click()
            assert download.value.suggested_filename == "hello.csv"
            assert Path(download.value.path()).read_bytes() == upload.read_bytes()

            fb.locator("input[placeholder=\"folder on the kernel's machine\"]").fill(str(dest))
            fb.locator("button", has_text="Save to kernel").click()
            expect(fb.locator(".aca-status")).to_contain_text("Saved hello.csv")
            page.screenshot(path=str(shot), full_page=True)
            assert pool.token not in page.content()  # nowhere in the page, attributes and links included
        except Exception:
            page.screenshot(path=str(shot.with_name(shot.stem + "-failed.png")), full_page=True)
            print("browser console:\n" + "\n".join(console[-40:]))
            raise
        finally:
            browser.close()

    assert (dest / "hello.csv").read_text() == upload.read_text()  # the folder was created on the kernel side
