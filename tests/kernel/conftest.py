"""Kernelspecs for the ACA Sessions kernel in a temporary JUPYTER_PATH, pointed at the shared local pool.

``aca_test`` (interrupt_mode message, as shipped) and ``aca_test_signal`` (signal mode) talk to the ``pool``
fixture's emulator; ``aca_test_local`` has no endpoint, so it finds or starts a local pool of its own in an
isolated state directory, stopped at the end of the run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

KERNEL_ARGV = [sys.executable, "-m", "aca_kernel.kernel", "-f", "{connection_file}"]


def write_kernelspec(root: Path, name: str, env: dict[str, str], interrupt_mode: str = "message",
                     extra_argv: tuple[str, ...] = ()) -> None:
    d = root / "kernels" / name
    d.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [*KERNEL_ARGV, *extra_argv], "display_name": f"ACA Sessions ({name})", "language": "python",
            "interrupt_mode": interrupt_mode, "env": env}
    (d / "kernel.json").write_text(json.dumps(spec))


@pytest.fixture(scope="session")
def local_pool_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An isolated state directory for kernels that start their own local pool; that pool is stopped after."""
    d = tmp_path_factory.mktemp("localpool")
    yield d
    from aca_kernel._localpool import stop_local_pool

    old = os.environ.get("ACA_LOCAL_POOL_DIR")
    os.environ["ACA_LOCAL_POOL_DIR"] = str(d)
    try:
        stop_local_pool()
    finally:
        if old is None:
            os.environ.pop("ACA_LOCAL_POOL_DIR", None)
        else:
            os.environ["ACA_LOCAL_POOL_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def kernelspecs(pool, local_pool_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("jupyter")
    # A long progress threshold keeps protocol tests independent of machine speed; tests of the progress
    # display lower it with %aca_config.
    common = {"ACA_PROGRESS_AFTER": "60", "ACA_LOCAL_POOL_DIR": str(local_pool_dir)}
    remote = {**common, "ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or ""}
    write_kernelspec(root, "aca_test", remote)
    write_kernelspec(root, "aca_test_signal", remote, interrupt_mode="signal")
    write_kernelspec(root, "aca_test_local", {**common, "ACA_POOL_MANAGEMENT_ENDPOINT": "", "ACA_TOKEN": ""})
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.fixture
def kernel():
    """Start kernels by kernelspec name; all are shut down when the test ends."""
    started = []

    def start(name: str = "aca_test"):
        # A kernel whose first cell starts a local pool under a loaded CI machine needs more than the default 60 s.
        km, kc = start_new_kernel(kernel_name=name, startup_timeout=120)
        started.append((km, kc))
        return km, kc

    yield start
    for km, kc in started:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def pool_kernelspec(root: Path, name: str, pool, **env: str) -> None:
    """A kernelspec ``name`` of the ACA Sessions kernel on ``pool`` (a private one, from ``make_pool``)."""
    write_kernelspec(root, name, {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
                                  "ACA_PROGRESS_AFTER": "60", **env})
