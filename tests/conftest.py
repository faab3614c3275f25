"""Shared fixtures: a real local session pool (emulator) process on loopback.

Every test that needs the service talks to a real ``aca-sessions emulator`` over real HTTP. ``pool`` is one
process shared by the whole run; ``make_pool(...)`` starts a private one with its own settings (short cooldown,
short timeouts, few sessions) and stops it at the end of the test.

With ``ACA_TEST_LIVE=1`` and ``ACA_POOL_MANAGEMENT_ENDPOINT`` set, ``pool`` points at that real Azure pool
instead (auth through ``ACA_TOKEN`` or DefaultAzureCredential) so the contract tests check the emulator's
fidelity; tests that need emulator-only settings use ``make_pool`` and are skipped in live mode.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The suite gets IPython and Jupyter directories of its own, so that what a developer's machine holds (a history
# database, config, kernelspecs, running servers) cannot change a result: set before any kernel or shell starts.
_HOME_DIRS = {"IPYTHONDIR": "ipython", "JUPYTER_CONFIG_DIR": "jupyter-config", "JUPYTER_DATA_DIR": "jupyter-data",
              "JUPYTER_RUNTIME_DIR": "jupyter-runtime", "MPLCONFIGDIR": "matplotlib"}
_SUITE_HOME = Path(tempfile.mkdtemp(prefix="aca-test-home-"))
for _var, _sub in _HOME_DIRS.items():
    os.environ[_var] = str(_SUITE_HOME / _sub)
    (_SUITE_HOME / _sub).mkdir()
os.environ.pop("JUPYTER_PATH", None)
os.environ.pop("JUPYTER_CONFIG_PATH", None)
os.environ.pop("JUPYTER_PREFER_ENV_PATH", None)
# Registered first, so it runs last: IPython shells write their history at exit.
atexit.register(shutil.rmtree, _SUITE_HOME, ignore_errors=True)


LIVE = os.environ.get("ACA_TEST_LIVE") == "1" and bool(os.environ.get("ACA_POOL_MANAGEMENT_ENDPOINT"))
HAVE_BWRAP = shutil.which("bwrap") is not None


@dataclass
class PoolProcess:
    """A running local session pool (or, in live mode, a description of the real pool)."""

    endpoint: str
    token: str | None
    data_dir: Path | None = None
    proc: subprocess.Popen | None = None
    live: bool = False
    output: list[str] = field(default_factory=list)

    def pool_endpoint(self, pool: str = "testpool") -> str:
        """The endpoint of a named pool under the Azure-style prefix on the same server."""
        base = self.endpoint.rstrip("/")
        return f"{base}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/sessionPools/{pool}"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_pool(data_dir: Path, *args: str, timeout: float = 60.0, open_files: tuple[int, int] | None = None,
               env: dict[str, str] | None = None, wrap: tuple[str, ...] = ()) -> PoolProcess:
    """Start ``python -m aca_kernel.emulator`` on a free loopback port and wait for its endpoint line.

    ``open_files`` (soft, hard) sets the process's RLIMIT_NOFILE before it starts (``ulimit -n``); ``wrap`` is a
    command line that runs the emulator's (``sh -c '...; exec "$@"' sh``)."""
    token = "test-" + secrets.token_hex(8)
    cmd = [sys.executable, "-m", "aca_kernel.emulator", "--host", "127.0.0.1", "--port", "0",
           "--token", token, "--data-dir", str(data_dir), *args]
    if not HAVE_BWRAP and "--no-sandbox" not in args:
        cmd.append("--no-sandbox")
    cmd = [*wrap, *cmd]
    env = dict(os.environ if env is None else env)
    env.pop("ACA_POOL_MANAGEMENT_ENDPOINT", None)
    preexec = None
    if open_files is not None:
        import resource

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=preexec)
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("pool endpoint: ") and not found:
                found.append(line.split(": ", 1)[1].strip())
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or not found:
        proc.kill()
        raise RuntimeError("local session pool did not start:\n" + "".join(lines))
    return PoolProcess(endpoint=found[0], token=token, data_dir=data_dir, proc=proc, output=lines)


@pytest.fixture(scope="session")
def pool(tmp_path_factory: pytest.TempPathFactory):
    """The shared pool: a real emulator process, or the live Azure pool with ACA_TEST_LIVE=1."""
    if LIVE:
        yield PoolProcess(endpoint=os.environ["ACA_POOL_MANAGEMENT_ENDPOINT"],
                          token=os.environ.get("ACA_TOKEN"), live=True)
        return
    # Many test modules share this pool: a short cooldown and a high cap keep idle kernels from piling up.
    p = start_pool(tmp_path_factory.mktemp("pool"), "--ready", "1", "--timeout", "60",
                   "--cooldown", "90", "--max-sessions", "1000")
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def make_pool(tmp_path: Path):
    """Factory for a private emulator with its own options; stopped when the test ends."""
    if LIVE:
        pytest.skip("needs emulator-only settings")
    started: list[PoolProcess] = []

    def factory(*args: str, **options) -> PoolProcess:
        d = tmp_path / f"pool{len(started)}"
        d.mkdir()
        p = start_pool(d, *args, **options)
        started.append(p)
        return p

    yield factory
    for p in started:
        p.stop()


def pools_started_in(state: Path) -> list[int]:
    """Running (not zombie) emulators whose working directory is ``state``: how the user's local pool is started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if (b"aca_kernel.emulator" in Path(f"/proc/{entry}/cmdline").read_bytes()
                    and os.readlink(f"/proc/{entry}/cwd") == str(state)
                    and Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0] != "Z"):
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture
def pool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The user's local pool in a folder of this test's own; every pool started there is gone at the end, recorded
    in the state file or not (a test may fail half-way, or test an interrupted start)."""
    from aca_kernel._localpool import _terminate, stop_local_pool

    d = tmp_path / "state"
    monkeypatch.setenv("ACA_LOCAL_POOL_DIR", str(d))
    monkeypatch.delenv("ACA_LOCAL_POOL_ARGS", raising=False)
    yield d
    stop_local_pool()
    for pid in pools_started_in(d):
        _terminate(pid, timeout=5)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns a truthy value (for state changes, never for speed claims)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def make_kernel(tmp_path: Path):
    """Start session kernels (``SessionKernel``) laid out as a pool lays them out, data and run dirs side by side;
    sandboxed by default when bubblewrap is installed. All are shut down when the test ends."""
    import asyncio

    from aca_kernel.emulator.runtime import SandboxConfig, SessionKernel

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
