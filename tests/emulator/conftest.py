"""Fixtures for the session-kernel runtime tests: real kernels started through SessionKernel."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from aca_kernel.emulator.runtime import SandboxConfig, SessionKernel

HAVE_BWRAP = shutil.which("bwrap") is not None


@pytest.fixture
def make_kernel(tmp_path: Path):
    """Start ``SessionKernel``s laid out as a pool lays them out (data and run dirs side by side); all are shut
    down at the end. Sandboxed by default when bubblewrap is installed."""
    started: list[SessionKernel] = []

    async def factory(name: str = "a", **config) -> SessionKernel:
        config.setdefault("enabled", HAVE_BWRAP)
        kernel = SessionKernel(tmp_path / "pool" / "data" / name, tmp_path / "pool" / "run" / name,
                               SandboxConfig(**config))
        started.append(kernel)
        await kernel.start()
        return kernel

    yield factory

    async def stop_all() -> None:
        for kernel in started:
            await kernel.shutdown()

    asyncio.run(stop_all())
