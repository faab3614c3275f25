"""The example notebooks run top to bottom with nbclient against the real pool, and their plots are real PNGs."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(data: bytes) -> tuple[int, int]:
    """A PNG with a sane header; returns (width, height)."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 0 < width < 10_000 and 0 < height < 10_000
    return width, height


@pytest.fixture
def kernel_env(pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Kernels started by nbclient inherit this: the shared pool, and the kernelspec in a private JUPYTER_PATH."""
    from aca_kernel.kernel.install import install

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "kspec" / "share" / "jupyter"))
    install(prefix=tmp_path / "kspec", name="aca_sessions")
    monkeypatch.setenv("ACA_POOL_MANAGEMENT_ENDPOINT", pool.endpoint)
    monkeypatch.setenv("ACA_LOCAL_POOL_DIR", str(tmp_path / "no-local-pool"))
    monkeypatch.delenv("ACA_SESSION_ID", raising=False)
    if pool.token:
        monkeypatch.setenv("ACA_TOKEN", pool.token)
    workdir = tmp_path / "work"
    workdir.mkdir()
    yield workdir
    if (tmp_path / "no-local-pool" / "aca-sessions-pool.json").exists():
        from aca_kernel._localpool import stop_local_pool

        stop_local_pool()
        pytest.fail("a kernel fell back to the local pool although an endpoint was set")


def run_notebook(name: str, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    NotebookClient(nb, timeout=180, resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def text_of(out: dict) -> str:
    if out["output_type"] == "stream":
        return out["text"]
    return out.get("data", {}).get("text/plain", "")


def pngs(nb: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(out["data"]["image/png"]) for out in outputs(nb) if "image/png" in out.get("data", {})]


def test_notebooks_are_valid_and_clean():
    for name, kernel in (("quickstart", "aca_sessions"), ("data_analysis", "aca_sessions"), ("magic", "python3")):
        nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4
        assert nb.metadata.kernelspec.name == kernel
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} has stored outputs"


def test_notebooks_match_their_generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", EXAMPLES / "build_notebooks.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    for name in ("quickstart", "data_analysis", "magic"):
        stored = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
        assert stored == getattr(builder, name)(), f"run python examples/build_notebooks.py ({name} drifted)"


def test_quickstart(kernel_env: Path):
    nb = run_notebook("quickstart", kernel_env)
    outs = outputs(nb)
    assert not [o for o in outs if o["output_type"] == "error"]
    assert any(o["output_type"] == "stream" and "Python 3." in o["text"] for o in outs)
    results = [text_of(o) for o in outs if o["output_type"] == "execute_result"]
    assert "42" in results and "43" in results  # the value, then state kept across cells
    assert any("text/html" in o.get("data", {}) and "Nairobi" in o["data"]["text/html"] for o in outs)
    (plot,) = pngs(nb)
    assert assert_png(plot)[0] > 100
    assert any("temperature.png" in text_of(o) for o in outs if o["output_type"] == "execute_result")


def test_data_analysis(kernel_env: Path):
    nb = run_notebook("data_analysis", kernel_env)
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    # %%local wrote the CSV here; %aca_download brought the chart and summary back here.
    assert (kernel_env / "measurements.csv").read_text().startswith("sensor,temperature,humidity")
    assert_png((kernel_env / "histograms.png").read_bytes())
    summary = json.loads((kernel_env / "summary.json").read_text())
    assert summary["rows"] == 500
    assert summary["sensors"] == ["s0", "s1", "s2", "s3", "s4"]
    assert 15 < summary["temperature_mean"] < 27
    images = pngs(nb)
    assert images, "the histogram cell showed no image"
    for data in images:
        assert_png(data)
    assert any("histograms.png:" in text_of(o) for o in outputs(nb))


def test_magic(kernel_env: Path):
    nb = run_notebook("magic", kernel_env)
    outs = outputs(nb)
    assert not [o for o in outs if o["output_type"] == "error"]
    streams = "".join(o["text"] for o in outs if o["output_type"] == "stream")
    assert "remote: 3." in streams and "/mnt/data" in streams
    assert f"local: {kernel_env}" in streams
    assert "the session computed 570" in streams  # --out brought sum(squares) * 2 back as a local value
    assert "571" in [text_of(o) for o in outs if o["output_type"] == "execute_result"]
    (plot,) = pngs(nb)
    assert_png(plot)


def test_client_demo_runs(pool, tmp_path: Path):
    env = dict(os.environ, ACA_POOL_MANAGEMENT_ENDPOINT=pool.endpoint, ACA_LOCAL_POOL_DIR=str(tmp_path / "lp"))
    if pool.token:
        env["ACA_TOKEN"] = pool.token
    env.pop("ACA_SESSION_ID", None)
    proc = subprocess.run([sys.executable, str(EXAMPLES / "client_demo.py"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 * 7 = 42" in proc.stdout
    assert_png((tmp_path / "out" / "squares.png").read_bytes())
    assert_png((tmp_path / "out" / "result.png").read_bytes())
