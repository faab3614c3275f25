"""The bubblewrap sandbox around one session kernel, and its memory limit.

This module builds argv lists and manages cgroups; it starts no kernel itself (that is ``runtime.py``).

Isolation (see ``docs/sandbox.md``): new user/PID/network/IPC/UTS/cgroup namespaces, no capabilities, a
read-only view of ``/usr``, ``/etc`` (with every file that is not world-readable masked) and the Python
installation, a private tmpfs ``/tmp``, and the session's data directory read-write at ``/mnt/data``.

Memory: a cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) that the launcher joins before bwrap
forks, so every process of the session is charged to it; where no memory cgroup is writable, ``prlimit --as``
(RLIMIT_AS) inside the sandbox instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SANDBOX_DATA_DIR",
    "SANDBOX_SETUP_FILE",
    "MemoryCgroup",
    "SandboxConfig",
    "bwrap_argv",
    "check_sandbox",
    "parse_memory",
    "python_bind_paths",
    "rlimit_prefix",
    "via_args_file",
]

logger = logging.getLogger("aca_kernel.emulator.sandbox")

SANDBOX_DATA_DIR = "/mnt/data"
SANDBOX_SETUP_FILE = "/opt/aca/setup_kernel.py"
SANDBOX_HOME = "/tmp/home"
# RLIMIT_AS counts virtual memory: an idle kernel already maps ~740 MB, so the fallback limit adds headroom.
RLIMIT_HEADROOM = 1 << 30

_TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass
class SandboxConfig:
    """How session kernels are run.

    ``enabled=False`` (``--no-sandbox``) runs the kernel as a plain child process with the data dir as cwd.
    ``memory`` is a limit such as ``"512M"`` or ``"2G"`` (None: no limit). ``python`` is the interpreter (it must
    have ipykernel) that the sessions run.
    """

    enabled: bool = True
    memory: str | None = "2G"
    python: str = sys.executable


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


# --- the Python installation -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def python_bind_paths(python: str) -> tuple[str, ...]:
    """Directories that must be visible (read-only, same path) for ``python`` to run inside the sandbox.

    A venv's ``bin/python`` is a symlink into the base installation, so both the venv and the base prefix are
    needed; symlinked prefixes are bound at both their own path and their target.
    """
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        prefixes = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    else:
        code = "import sys, json; print(json.dumps([sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]))"
        try:
            out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30, check=True)
            prefixes = json.loads(out.stdout)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise RuntimeError(f"cannot run the session interpreter {python!r}: {exc}") from exc
    prefixes.append(str(Path(os.path.realpath(python)).parent.parent))
    venv = Path(os.path.abspath(python)).parent.parent
    if (venv / "pyvenv.cfg").exists():
        prefixes.append(str(venv))
    paths: set[str] = set()
    for prefix in prefixes:
        for p in (os.path.abspath(prefix), os.path.realpath(prefix)):
            if p != "/" and not _under(p, "/usr") and os.path.isdir(p):
                paths.add(p)
    # a prefix inside another is already visible through the outer bind
    return tuple(sorted(p for p in paths if not any(o != p and _under(p, o) for o in paths)))


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@functools.lru_cache(maxsize=1)
def _etc_masks() -> tuple[str, ...]:
    """bwrap args hiding what in /etc is not world-readable (shadow, gshadow, ssh host keys, ...).

    The sandbox runs as uid 0 without capabilities, so owner permissions would still let it read root's 0600
    files: masking by mode keeps that generic instead of listing names.
    """
    args: list[str] = []
    for root, dirs, files in os.walk("/etc"):
        for name in list(dirs):
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o005) != 0o005:
                args += ["--tmpfs", path, "--remount-ro", path]
                dirs.remove(name)
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH:
                args += ["--ro-bind", "/dev/null", path]
    return tuple(args)


def _top_level_links() -> list[str]:
    """Merged-/usr systems have /bin -> usr/bin etc.; older layouts have real directories."""
    args: list[str] = []
    for name in _TOP_LEVEL_LINKS:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _base_argv() -> list[str]:
    # --cap-drop ALL is essential: as root, bwrap otherwise keeps every capability inside the sandbox and code
    # could remount /usr read-write.
    return [
        "bwrap", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--hostname", "session",
        "--proc", "/proc", "--dev", "/dev",
        # before any bind under /tmp, or the tmpfs would hide it
        "--tmpfs", "/tmp",
        "--ro-bind", "/usr", "/usr", *_top_level_links(),
    ]


def bwrap_argv(*, python: str, data_dir: Path, ipc_dir: Path, setup_file: Path) -> list[str]:
    """The bwrap command line up to (not including) the interpreter.

    ``ipc_dir`` (connection file and ZMQ sockets) is bound at its own path because both sides use the paths
    written in the connection file.
    """
    argv = _base_argv()
    argv += ["--ro-bind", "/etc", "/etc", *_etc_masks()]
    for path in python_bind_paths(python):
        argv += ["--ro-bind", path, path]
    argv += ["--ro-bind", str(setup_file), SANDBOX_SETUP_FILE]
    argv += ["--bind", str(data_dir), SANDBOX_DATA_DIR, "--bind", str(ipc_dir), str(ipc_dir)]
    argv += ["--dir", SANDBOX_HOME, "--chdir", SANDBOX_DATA_DIR]
    # --clearenv: jupyter_client's JPY_PARENT_PID names a host PID; inside the PID namespace the kernel's parent
    # is bwrap's init, so ipykernel would think its parent died and exit.
    argv += ["--clearenv"]
    env = {
        "PATH": f"{Path(os.path.abspath(python)).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_HOME,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "IPYTHONDIR": f"{SANDBOX_HOME}/.ipython",
        "MPLCONFIGDIR": f"{SANDBOX_HOME}/.config/matplotlib",
    }
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv


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


def via_args_file(argv: list[str], args_file: Path) -> list[str]:
    """``bwrap --args 3`` reading the options from a file instead of the command line.

    bwrap's init is PID 1 inside the sandbox, so its command line (with the host paths of the session's data
    directory) would be readable from /proc/1/cmdline; bwrap closes the descriptor before running the kernel.
    """
    fd = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(arg.encode() + b"\0" for arg in argv[1:]))
    return ["/bin/sh", "-c", 'exec "$@" 3<"$0"', str(args_file), argv[0], "--args", "3"]


def rlimit_prefix(limit: int) -> list[str]:
    """Address-space limit for the fallback path (no memory cgroup): a MemoryError rather than an OOM kill."""
    prlimit = _prlimit()
    return [prlimit, f"--as={limit + RLIMIT_HEADROOM}", "--"] if prlimit else []


def check_sandbox(config: SandboxConfig) -> None:
    """Fail early, with one actionable line, if session kernels cannot be started with this configuration."""
    if config.memory is not None:
        try:
            parse_memory(config.memory)
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
    if not os.access(config.python, os.X_OK):
        raise RuntimeError(f"session interpreter {config.python!r} is not executable: pass a Python with ipykernel")
    probe = subprocess.run([config.python, "-c", "import ipykernel"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        raise RuntimeError(
            f"session interpreter {config.python!r} cannot import ipykernel: "
            "install it there (pip install ipykernel) or choose another interpreter"
        )
    if not config.enabled:
        return
    if shutil.which("bwrap") is None:
        raise RuntimeError(
            "bubblewrap (bwrap) is not installed: install it (apt-get install bubblewrap) "
            "or start the pool with --no-sandbox to run sessions unsandboxed"
        )
    try:
        proc = subprocess.run([*_base_argv(), "--", "/usr/bin/true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"bubblewrap cannot run here ({exc}): start the pool with --no-sandbox") from exc
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RuntimeError(
            f"bubblewrap cannot create a sandbox here ({reason}); "
            "allow user namespaces or start the pool with --no-sandbox"
        )


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
    if not _under(path, root):
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
