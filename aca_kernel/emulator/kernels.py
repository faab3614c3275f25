"""Where session kernels come from: new ones on demand, or pre-started ones (``--ready N``) kept warm.

A pre-started kernel is bound at start to its own empty data directory (the runtime bind-mounts it as
/mnt/data), so it comes together with that directory; the session that claims it moves its files in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import errors
from .files import SessionFiles

__all__ = ["KernelFactory", "KernelLike", "KernelSupply", "WarmKernel", "probe_interpreter"]

logger = logging.getLogger("aca_kernel.emulator")


class KernelLike(Protocol):
    """What the pool needs from ``runtime.SessionKernel``."""

    async def start(self) -> None: ...
    async def execute(self, code: str, timeout: float) -> Any: ...
    async def shutdown(self) -> None: ...
    @property
    def alive(self) -> bool: ...


# (data_dir, run_dir) -> a kernel not yet started
KernelFactory = Callable[[Path, Path], KernelLike]


@dataclass
class WarmKernel:
    kernel: KernelLike
    files: SessionFiles


class KernelSupply:
    """Makes kernels, and keeps ``ready`` of them started ahead, refilled in the background."""

    MAX_FAILURES = 3

    def __init__(self, factory: KernelFactory, ready: int, new_files: Callable[[], SessionFiles]) -> None:
        self._factory = factory
        self._ready = ready
        self._new_files = new_files
        self._warm: list[WarmKernel] = []
        self._run_root: Path | None = None
        self._run_seq = 0
        self._failures = 0
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    def start(self, run_root: Path) -> None:
        """``run_root`` (short: kernel socket paths must stay under 107 bytes) holds one folder per kernel."""
        self._run_root = run_root
        self._wakeup = asyncio.Event()

    def new_kernel(self, files: SessionFiles) -> KernelLike:
        """A kernel (not started) whose /mnt/data is ``files``."""
        assert self._run_root is not None, "KernelSupply.start() was not called"
        self._run_seq += 1
        run_dir = self._run_root / str(self._run_seq)
        run_dir.mkdir()
        return self._factory(files.root, run_dir)

    def take(self) -> WarmKernel | None:
        """A started kernel with its data directory, if one is ready; the refill starts at once."""
        warm = self._warm.pop(0) if self._warm else None
        self.wake()
        return warm

    def wake(self) -> None:
        """Ask for a refill (also after a session started a kernel: the interpreter works again)."""
        self._failures = 0
        if self._wakeup is not None:
            self._wakeup.set()

    async def refill_forever(self) -> None:
        assert self._wakeup is not None
        while not self._closed:
            while len(self._warm) < self._ready and not self._closed and self._failures < self.MAX_FAILURES:
                await self._start_one()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _start_one(self) -> None:
        files = self._new_files()
        warm = WarmKernel(self.new_kernel(files), files)
        try:
            await warm.kernel.start()
        except asyncio.CancelledError:
            # Pool closing mid-start: the half-started kernel must not outlive us.
            await self.discard(warm)
            raise
        except Exception as exc:
            self._failures += 1
            logger.error("could not pre-start a session kernel: %s", exc)
            await self.discard(warm)
            # Back off instead of spinning on a broken interpreter; a session's own start retries later.
            await asyncio.sleep(2.0 * self._failures)
            return
        self._failures = 0
        if self._closed:
            await self.discard(warm)
        else:
            self._warm.append(warm)

    async def discard(self, warm: WarmKernel) -> None:
        try:
            await warm.kernel.shutdown()
        except Exception:
            logger.exception("pre-started kernel shutdown failed")
        warm.files.remove()

    async def close(self) -> int:
        """Stop the pre-started kernels; returns how many there were."""
        self._closed = True
        warm, self._warm = self._warm, []
        await asyncio.gather(*(self.discard(w) for w in warm), return_exceptions=True)
        return len(warm)


_PROBE = (
    "import json, platform, importlib.metadata as m\n"
    "pk = sorted({(d.metadata['Name'], d.version) for d in m.distributions() if d.metadata['Name']})\n"
    "k = m.metadata('ipykernel')\n"
    "print(json.dumps({'python': platform.python_version(), 'packages': pk,"
    " 'kernel': [k['Version'], k['Summary'] or '', k['Home-page'] or 'https://ipython.org']}))\n"
)


async def probe_interpreter(python: str) -> dict[str, Any]:
    """Python version, installed distributions and ipykernel of the interpreter the sessions run."""
    proc = await asyncio.create_subprocess_exec(
        python, "-c", _PROBE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    with contextlib.suppress(ValueError):
        if proc.returncode == 0:
            return json.loads(out)
    last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
    raise errors.InternalError(f"Could not read the session interpreter's packages ({python}): {last}")
