"""The bubblewrap sandbox around one session kernel.

This module builds argv lists; it starts no kernel itself (that is ``runtime.py``).

Isolation (see ``docs/sandbox.md``): new user/PID/network/IPC/UTS/cgroup namespaces, no capabilities, a
read-only view of ``/usr``, ``/etc`` (with every file that is not world-readable masked) and the Python
installation, a private tmpfs ``/tmp``, and the session's data directory read-write at ``/mnt/data``.

The memory limit (cgroup, or RLIMIT_AS) is in ``memory.py``; its names are re-exported here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .memory import MemoryCgroup, parse_memory, rlimit_prefix, under

__all__ = [
    "SANDBOX_DATA_DIR",
    "SANDBOX_SETUP_FILE",
    "MemoryCgroup",
    "SandboxConfig",
    "bwrap_argv",
    "check_sandbox",
    "font_cache",
    "parse_memory",
    "python_bind_paths",
    "rlimit_prefix",
    "via_args_file",
]

SANDBOX_DATA_DIR = "/mnt/data"
SANDBOX_SETUP_FILE = "/opt/aca/setup_kernel.py"
SANDBOX_HOME = "/tmp/home"
SANDBOX_MPLCONFIGDIR = f"{SANDBOX_HOME}/.config/matplotlib"

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
            if p != "/" and not under(p, "/usr") and os.path.isdir(p):
                paths.add(p)
    # a prefix inside another is already visible through the outer bind
    return tuple(sorted(p for p in paths if not any(o != p and under(p, o) for o in paths)))


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
    argv += _cpu_topology()
    fonts = font_cache(python, build=False)
    for font_list in sorted(fonts.glob("fontlist-*.json")) if fonts is not None else ():
        argv += ["--ro-bind", str(font_list), f"{SANDBOX_MPLCONFIGDIR}/{font_list.name}"]
    # --clearenv: jupyter_client's JPY_PARENT_PID names a host PID; inside the PID namespace the kernel's parent
    # is bwrap's init, so ipykernel would think its parent died and exit.
    argv += ["--clearenv"]
    env = {
        "PATH": f"{Path(os.path.abspath(python)).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": SANDBOX_HOME,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "IPYTHONDIR": f"{SANDBOX_HOME}/.ipython",
        "MPLCONFIGDIR": SANDBOX_MPLCONFIGDIR,
    }
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv


def _cpu_topology() -> list[str]:
    """A read-only view of the CPU topology (as a container on the service sees it).

    joblib/loky, and with them scikit-learn, count physical cores from it and warn without it; it holds no
    more than /proc/cpuinfo already shows.
    """
    path = "/sys/devices/system/cpu"
    return ["--ro-bind", path, path] if os.path.isdir(path) else []


@functools.lru_cache(maxsize=8)
def _font_cache_dir(python: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aca-sessions"
    return base / ("matplotlib-" + hashlib.sha256(os.path.realpath(python).encode()).hexdigest()[:12])


def font_cache(python: str, *, build: bool = True) -> Path | None:
    """A directory holding matplotlib's font list for ``python``'s matplotlib, built once per machine.

    Each sandbox starts with an empty MPLCONFIGDIR, where matplotlib would rebuild the list on the first plot
    of every session (about 150 ms, and a log line); the prebuilt list is bound read-only into it instead. None
    while it is not built, or when the interpreter has no matplotlib.
    """
    target = _font_cache_dir(python)
    if any(target.glob("fontlist-*.json")):
        return target
    if not build:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env["MPLCONFIGDIR"] = str(work)
        proc = subprocess.run([python, "-c", "import matplotlib.font_manager"], env=env, capture_output=True,
                              timeout=300)
        if proc.returncode != 0 or not any(work.glob("fontlist-*.json")):
            return None  # no matplotlib there: nothing to prebuild
        for stale in work.iterdir():
            if not stale.name.startswith("fontlist-"):
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
        try:
            work.rename(target)  # atomic: two pools building at once keep one of the results
        except OSError:
            pass
        return target if any(target.glob("fontlist-*.json")) else None
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def via_args_file(argv: list[str], args_file: Path) -> list[str]:
    """``bwrap --args 3`` reading the options from a file instead of the command line.

    bwrap's init is PID 1 inside the sandbox, so its command line (with the host paths of the session's data
    directory) would be readable from /proc/1/cmdline; bwrap closes the descriptor before running the kernel.
    """
    fd = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(arg.encode() + b"\0" for arg in argv[1:]))
    return ["/bin/sh", "-c", 'exec "$@" 3<"$0"', str(args_file), argv[0], "--args", "3"]


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
    threading.Thread(target=font_cache, args=(config.python,), name="font-cache", daemon=True).start()
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
