"""``make demo``: execute the example notebooks headlessly and keep the executed copies.

Runs quickstart, data_analysis and magic with nbclient on the local session pool (or on
$ACA_POOL_MANAGEMENT_ENDPOINT when set) and writes them to examples/output/. If the ACA Sessions kernel cannot
run, it also runs examples/client_demo.py so the demo still shows the service working, and exits non-zero.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"
NOTEBOOKS = ("quickstart", "data_analysis", "magic")


def kernelspec_path(root: Path) -> str:
    """A JUPYTER_PATH entry holding the aca_sessions kernelspec for this interpreter."""
    from aca_kernel.kernel.install import install

    path = str(root / "share" / "jupyter")
    # On JUPYTER_PATH before installing, so jupyter_client does not warn that it "may not be found".
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (path, os.environ.get("JUPYTER_PATH")) if p)
    install(prefix=root, name="aca_sessions")
    return path


def execute(name: str, workdir: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(HERE / f"{name}.ipynb", as_version=4)
    started = time.monotonic()
    client = NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:
        # Keep what ran, even on failure: the executed copy shows where it stopped.
        out = OUTPUT / f"{name}.ipynb"
        nbformat.write(nb, out)
    print(f"  {name}.ipynb: {len(nb.cells)} cells in {time.monotonic() - started:.1f} s -> {out}")
    return out


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    OUTPUT.mkdir(exist_ok=True)
    started_pool = False
    if not os.environ.get("ACA_POOL_MANAGEMENT_ENDPOINT"):
        from aca_kernel._localpool import ensure_local_pool

        pool = ensure_local_pool()
        started_pool = pool.started
        print(f"local session pool at {pool.endpoint} ({'started' if pool.started else 'already running'})")
        # Kernels started by nbclient inherit this environment.
        os.environ["ACA_POOL_MANAGEMENT_ENDPOINT"] = pool.endpoint
        os.environ["ACA_TOKEN"] = pool.token
    failed: list[str] = []
    rc = 0
    with tempfile.TemporaryDirectory(prefix="aca-demo-") as tmp:
        kernelspec_path(Path(tmp) / "kspec")
        workdir = OUTPUT / "files"
        workdir.mkdir(exist_ok=True)
        print("executing the example notebooks:")
        for name in NOTEBOOKS:
            try:
                execute(name, workdir)
            except Exception as exc:  # report and go on: one broken notebook should not hide the others
                failed.append(name)
                summary = str(exc).strip().splitlines()
                print(f"  {name}.ipynb FAILED: {type(exc).__name__}: {summary[-1] if summary else ''}")
    if failed:
        print("falling back to the client demo (examples/client_demo.py):")
        rc = subprocess.run([sys.executable, str(HERE / "client_demo.py"), str(OUTPUT / "client_demo")]).returncode
    if started_pool:
        from aca_kernel._localpool import stop_local_pool

        stop_local_pool()
        print("stopped the local session pool this demo started")
    print(f"\nexecuted notebooks: {OUTPUT}/  (downloaded files in {OUTPUT / 'files'}/)")
    if shutil.which("jupyter"):
        print(f"open them with: jupyter lab {OUTPUT}")
    if failed:
        print(f"FAILED: {', '.join(failed)} did not run to the end; see the executed copies above")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
