"""The memory limit of one session kernel: a cgroup, or RLIMIT_AS where no memory cgroup is writable.

A cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) that the launcher joins before bwrap forks, so every
process of the session is charged to it; where none is writable, ``prlimit --as`` (RLIMIT_AS) inside the
sandbox instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import signal
from pathlib import Path

__all__ = ["MemoryCgroup", "parse_memory", "rlimit_prefix", "under"]

logger = logging.getLogger("aca_kernel.emulator.sandbox")

# RLIMIT_AS counts virtual memory: an idle kernel already maps ~740 MB, so the fallback limit adds headroom.
RLIMIT_HEADROOM = 1 << 30

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_memory(text: str) -> int:
    """``"512M"`` -> bytes (binary units: K, M, G, T; a plain number is bytes)."""
    match = _MEMORY_RE.match(str(text))
    if not match:
        raise ValueError(f"invalid memory limit {text!r}: use a size such as 512M or 2G")
    number, unit = match.groups()
    value = int(float(number) * (1 << (10 * " kmgt".index(unit.lower() or " "))))
    if value < (64 << 20):
        raise ValueError(f"memory limit {text!r} is too small for a Python kernel: use at least 64M")
    return value


def under(path: str, parent: str) -> bool:
    """``path`` is ``parent`` or inside it (plain string paths, no resolution)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@functools.lru_cache(maxsize=1)
def _prlimit() -> str | None:
    # looked up (and warned about) once per process, not per kernel
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        logger.warning("neither a memory cgroup nor prlimit is available: session memory is not limited")
    else:
        logger.warning("no writable memory cgroup: limiting session address space with RLIMIT_AS instead "
                       "(allocations past the limit raise MemoryError; the limit is approximate)")
    return prlimit


def rlimit_prefix(limit: int) -> list[str]:
    """Address-space limit for the fallback path (no memory cgroup): a MemoryError rather than an OOM kill."""
    prlimit = _prlimit()
    return [prlimit, f"--as={limit + RLIMIT_HEADROOM}", "--"] if prlimit else []



# --- memory cgroups ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _memory_cgroup_parent() -> tuple[Path, int] | None:
    """The cgroup this process is in, for the memory controller, if it exists and is writable: (dir, version)."""
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in own:
        hier, controllers, path = line.split(":", 2)
        if hier == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    for line in mounts:
        fields = line.split()
        sep = fields.index("-")
        root, mountpoint, fstype, super_opts = fields[3], fields[4], fields[sep + 1], fields[sep + 3]
        if fstype == "cgroup2" and v2_path is not None and v1_path is None:
            parent = _join_cgroup(mountpoint, root, v2_path)
            if parent and _v2_memory_delegated(parent):
                return parent, 2
        elif fstype == "cgroup" and v1_path is not None and "memory" in super_opts.split(","):
            parent = _join_cgroup(mountpoint, root, v1_path)
            if parent and os.access(parent, os.W_OK):
                return parent, 1
    return None


def _join_cgroup(mountpoint: str, root: str, path: str) -> Path | None:
    if not under(path, root):
        return None
    rel = path[len(root.rstrip("/")):].lstrip("/")
    parent = Path(mountpoint, rel)
    return parent if parent.is_dir() else None


def _v2_memory_delegated(parent: Path) -> bool:
    try:
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            return False
        control = parent / "cgroup.subtree_control"
        if "memory" not in control.read_text().split():
            # fails (EBUSY) when this cgroup holds processes and is not the root: the no-internal-process rule
            control.write_text("+memory")
        return os.access(parent, os.W_OK)
    except OSError:
        return False


class MemoryCgroup:
    """One memory cgroup per kernel process tree; ``create`` returns None where none can be made."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def create(cls, limit: int) -> MemoryCgroup | None:
        found = _memory_cgroup_parent()
        if found is None:
            return None
        parent, version = found
        _remove_stale(parent)
        path = parent / f"aca-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except OSError as exc:
            logger.warning("cannot create a memory cgroup under %s: %s", parent, exc)
            return None
        group = cls(path, version)
        try:
            if version == 2:
                (path / "memory.max").write_text(str(limit))
                _write_if_exists(path / "memory.swap.max", "0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(limit))
                # without this, swap would let the session exceed the limit instead of being killed
                _write_if_exists(path / "memory.memsw.limit_in_bytes", str(limit))
        except OSError as exc:
            logger.warning("cannot set the memory limit in %s: %s", path, exc)
            group.remove()
            return None
        return group

    @property
    def mode(self) -> str:
        return f"cgroup v{self.version}"

    def launch_prefix(self) -> list[str]:
        """Join the cgroup, then exec the real command, so every process it forks is charged to the cgroup."""
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.path)]

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def oom_killed(self) -> bool:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def kill(self) -> None:
        """SIGKILL every process still in the cgroup (catches children that escaped the process group)."""
        if self.version == 2 and _write_if_exists(self.path / "cgroup.kill", "1"):
            return
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def remove(self) -> bool:
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


def _remove_stale(parent: Path) -> None:
    """Remove empty cgroups left by pools that were killed (SIGKILL skips their cleanup)."""
    for child in parent.glob("aca-*-*"):
        pid = child.name.split("-")[1]
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        with contextlib.suppress(OSError):
            child.rmdir()


def _write_if_exists(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:
        return False
    return True
