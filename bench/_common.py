"""Helpers shared by the benchmarks: timing, a private kernelspec dir, a private local pool."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (perf_counter)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):8.2f} ms   p90 {p90:8.2f} ms   min {ms[0]:8.2f} ms   (n={len(ms)})"


@contextlib.contextmanager
def private_environment() -> Iterator[Path]:
    """A temp dir holding the aca_sessions kernelspec (on JUPYTER_PATH) and the state of a private local pool."""
    from aca_kernel.kernel.install import install

    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "ACA_LOCAL_POOL_DIR")}
    with tempfile.TemporaryDirectory(prefix="aca-bench-") as tmp:
        root = Path(tmp)
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (str(root / "kspec" / "share" / "jupyter"), saved["JUPYTER_PATH"]) if p)
        install(prefix=root / "kspec", name="aca_sessions")
        os.environ["ACA_LOCAL_POOL_DIR"] = str(root / "pool")
        try:
            yield root
        finally:
            from aca_kernel._localpool import stop_local_pool

            stop_local_pool()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
