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

import contextlib
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
from typing import Any

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
    session_id: str  # the ACA Sessions kernel's session on the pool


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
    server = Lab(url=f"http://127.0.0.1:{port}", token=token, root=root, proc=proc, log=log,
                 session_id=pool_env["ACA_SESSION_ID"])
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


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage"]


@contextlib.contextmanager
def notebook_page(lab: Lab, name: str, *, width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless chromium page with notebook ``name`` open in ``lab`` and its kernel connected and idle."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.console_lines = []
            page.on("console", lambda m: page.console_lines.append(f"{m.type}: {m.text}"))
            page.set_default_timeout(60_000)
            page.goto(f"{lab.url}/lab/workspaces/w{uuid.uuid4().hex[:8]}/tree/{name}?reset&token={lab.token}")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            # That indicator reads 'idle' before the kernel's websocket is up, and a cell run then is lost;
            # wait until Lab itself reports the kernel connected and idle (the app is exposed for this).
            page.wait_for_function(_KERNEL_READY, timeout=90_000)
            yield page
        finally:
            browser.close()


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

            # The upload button opens the file chooser of the chunked upload's hidden <input type=file>.
            with page.expect_file_chooser() as chooser:
                fb.locator("button.aca-chunked-files").click()
            chooser.value.set_files([str(upload), str(picture)])  # several files at once
            name = fb.locator(".aca-file-name", has_text="hello.csv")
            expect(name).to_be_visible()
            expect(fb.locator(".aca-file-name", has_text="chart.png")).to_be_visible()
            expect(fb.locator(".aca-chunked-row[data-state='done']")).to_have_count(2)  # one progress row per file

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


# Records every value the first progress bar whose row names `name` shows, every 20 ms, in the page.
_RECORD_PROGRESS = """name => {
  window.__acaSeen = window.__acaSeen || {};
  const seen = window.__acaSeen[name] = [];
  window.setInterval(() => {
    const row = [...document.querySelectorAll('.aca-chunked-row')].find(r => r.textContent.includes(name));
    if (row) seen.push(row.querySelector('progress').value / row.querySelector('progress').max);
  }, 20);
}"""


def write_big(path: Path, size: int) -> str:
    """A file of ``size`` pseudo-random bytes (written in 1 MB blocks); its SHA-256."""
    import hashlib

    digest, block = hashlib.sha256(), hashlib.sha256(path.name.encode()).digest() * 32768  # 1 MB
    with path.open("wb") as fh:
        for i in range(0, size, len(block)):
            piece = block[: min(len(block), size - i)]
            piece = bytes([i // len(block) % 251]) + piece[1:]  # every block different
            fh.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def run_cell(page, index: int) -> None:
    page.locator(".jp-NotebookPanel .jp-Cell").nth(index).locator(".cm-content").click()
    page.keyboard.press("Control+Enter")


def test_large_upload_cancel_busy_state_and_folder(lab: Lab, pool, tmp_path: Path) -> None:
    """In a 900 px wide window: a 50 MB file through the chunked upload with visible progress and its hash
    checked in the session, a 100 MB upload cancelled midway (nothing left), the busy state while a cell runs,
    and a folder with sub-folders; screenshot in ``artifacts/files-browser-upload.png``."""
    import nbformat
    from playwright.sync_api import expect, sync_playwright

    from aca_kernel import SessionsClient

    pytest.importorskip("aca_kernel.kernel.kernel", reason="the ACA Sessions kernel is not in this checkout")
    flag = tmp_path / "release-the-cell"
    big = tmp_path / "big.bin"
    big_sha = write_big(big, 50 * 1024 * 1024)
    huge = tmp_path / "huge.bin"
    write_big(huge, 100 * 1024 * 1024)
    small = tmp_path / "while-busy.txt"
    small.write_text("picked while a cell ran\n")
    folder = tmp_path / "project"
    for rel, text in {"README.md": "# p\n", "src/main.py": "print(1)\n", "src/pkg/ünï.py": "X = 1\n"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "aca_sessions", "display_name": "ACA Sessions (test)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%aca_files"),
                nbformat.v4.new_code_cell("import hashlib\nwith open('/mnt/data/big.bin', 'rb') as f:\n"
                                          "    print('sha', hashlib.sha256(f.read()).hexdigest())"),
                nbformat.v4.new_code_cell(f"%%local\nimport os, time\nwhile not os.path.exists({str(flag)!r}):\n"
                                          "    time.sleep(0.1)\nprint('released')")]
    nbformat.write(nb, lab.root / "upload.ipynb")
    shot = ARTIFACTS / "files-browser-upload.png"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1000})
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.set_default_timeout(60_000)
            page.goto(f"{lab.url}/lab/workspaces/u{uuid.uuid4().hex[:8]}/tree/upload.ipynb?reset&token={lab.token}")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            page.wait_for_function(_KERNEL_READY, timeout=90_000)
            run_cell(page, 0)
            fb = page.locator(".aca-file-browser").first
            expect(fb.locator(".aca-status")).to_contain_text("0 items in /mnt/data", timeout=90_000)

            # The header never breaks inside "2024-02-02-preview"; all four columns fit 900 px.
            version = fb.locator(".aca-files-title .aca-nowrap", has_text="2024-02-02-preview")
            assert version.evaluate("s => s.getClientRects().length") == 1
            table = fb.locator(".widget-gridbox").first
            assert table.evaluate("t => t.scrollWidth <= t.clientWidth + 1"), "the table is wider than its box"
            type_header = fb.locator("button.aca-sort", has_text="Type")
            assert type_header.bounding_box()["x"] + type_header.bounding_box()["width"] <= \
                table.bounding_box()["x"] + table.bounding_box()["width"] + 1

            # 50 MB (five times the server's websocket message limit) with progress shown as it goes.
            page.evaluate(_RECORD_PROGRESS, "big.bin")
            with page.expect_file_chooser() as chooser:
                fb.locator("button.aca-chunked-files").click()
            chooser.value.set_files(str(big))
            row = fb.locator(".aca-chunked-row", has_text="big.bin")
            expect(row).to_have_attribute("data-state", "done", timeout=180_000)
            expect(row).to_contain_text("uploaded 50.0 MB")
            seen = page.evaluate("() => window.__acaSeen['big.bin']")
            assert any(0 < v < 1 for v in seen), "no intermediate progress was shown"
            assert seen == sorted(seen)
            expect(fb.locator(".aca-file-name", has_text="big.bin")).to_be_visible()
            run_cell(page, 1)
            expect(page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output")).to_contain_text(
                f"sha {big_sha}", timeout=90_000)

            # 100 MB, cancelled as soon as its first megabytes were acknowledged.
            with page.expect_file_chooser() as chooser:
                fb.locator("button.aca-chunked-files").click()
            chooser.value.set_files(str(huge))
            huge_row = fb.locator(".aca-chunked-row", has_text="huge.bin")
            expect(huge_row.locator(".aca-chunked-info")).to_contain_text("MB / 100.0 MB", timeout=60_000)
            huge_row.locator("button.aca-chunked-cancel").click()
            expect(huge_row).to_have_attribute("data-state", "cancelled", timeout=60_000)

            # A cell is running: a file picked now waits, and the widget says why.
            run_cell(page, 2)
            with page.expect_file_chooser() as chooser:
                fb.locator("button.aca-chunked-files").click()
            chooser.value.set_files(str(small))
            expect(fb.locator(".aca-chunked-status")).to_contain_text("busy — waiting for the running cell")
            flag.write_text("go")
            expect(fb.locator(".aca-chunked-row", has_text="while-busy.txt")).to_have_attribute(
                "data-state", "done", timeout=60_000)
            expect(fb.locator(".aca-chunked-status")).not_to_contain_text("busy")

            # A folder, sub-folders and a unicode name kept.
            with page.expect_file_chooser() as chooser:
                fb.locator("button.aca-chunked-folder").click()
            chooser.value.set_files(str(folder))
            expect(fb.locator(".aca-chunked-row[data-state='done']", has_text="project/")).to_have_count(3)
            expect(fb.locator(".aca-file-name", has_text="project")).to_be_visible()
            page.screenshot(path=str(shot), full_page=True)
            assert pool.token not in page.content()
        except Exception:
            page.screenshot(path=str(shot.with_name(shot.stem + "-failed.png")), full_page=True)
            print("browser console:\n" + "\n".join(console[-40:]))
            raise
        finally:
            browser.close()

    client = SessionsClient(pool.endpoint, pool.token, session_id=lab.session_id)
    try:
        from aca_kernel._folders import is_internal

        names = sorted(f.path for f in client.list_files(recursive=True) if not is_internal(f.path))
        assert names == ["big.bin", "project/README.md", "project/src/main.py", "project/src/pkg/ünï.py",
                         "while-busy.txt"], names  # no huge.bin, not even part of it
        assert client.download_file("project/src/pkg/ünï.py") == b"X = 1\n"
    finally:
        client.close()
