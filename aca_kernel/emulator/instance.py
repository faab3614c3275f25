"""What one pool process owns outside its memory, and reclaiming what a dead pool left behind.

A pool process holds two lock files for as long as it lives (``flock``: the kernel drops the lock when the
process dies, however it dies, SIGKILL included):

* ``.lock`` in its run root ``/tmp/aca-XXXXXXXX/`` (kernel sockets, connection files, logs), next to
  ``owner.json`` (pid, instance id, data directory);
* ``<data-dir>/.pools/<id>.lock``, naming its session folders ``<data-dir>/sessions/<id>-<slug>/``, its staging
  folder ``<data-dir>/.staging/<id>/`` and its trash ``<data-dir>/.trash/<id>/``.

A starting pool looks for such markers that nobody holds: their pool is dead. It kills the session kernels
still running from that run root and removes the folders (see :func:`reclaim`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .tree import remove_tree

__all__ = ["Instance", "reclaim"]

logger = logging.getLogger("aca_kernel.emulator")

# Short on purpose: kernel sockets are <run root>/<n>/ipc/k-5 and a socket path must stay under 107 bytes.
RUN_PARENT = "/tmp"
RUN_PREFIX = "aca-"
LOCK = ".lock"
OWNER = "owner.json"


def _hold(path: Path) -> int:
    """Create ``path`` already locked: it is locked under a private name first, then renamed into place, so
    that no reclaiming pool can ever find it unlocked."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd


def _take_if_dead(path: Path) -> int | None:
    """The lock of a dead pool, now held by us (a descriptor); None if its pool lives (or it vanished)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@dataclass
class Instance:
    """The folders and locks of one pool process; ``claim`` at start, ``release`` at a clean stop."""

    data_dir: Path
    own_data_dir: bool = False  # the data directory is a temporary one made for this process alone
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    run_root: Path | None = None
    _locks: list[int] = field(default_factory=list)

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / "sessions"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / ".staging" / self.id

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / ".trash" / self.id

    @property
    def _lock_file(self) -> Path:
        return self.data_dir / ".pools" / f"{self.id}{LOCK}"

    def claim(self) -> None:
        for d in (self.sessions_dir, self.staging_dir, self.trash_dir, self._lock_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        self._locks.append(_hold(self._lock_file))
        parent = RUN_PARENT if os.path.isdir(RUN_PARENT) else None
        self.run_root = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=parent))
        self._locks.append(_hold(self.run_root / LOCK))
        owner = {"pid": os.getpid(), "id": self.id, "data_dir": str(self.data_dir), "own_data_dir": self.own_data_dir}
        (self.run_root / OWNER).write_text(json.dumps(owner))

    def new_session_dir(self) -> Path:
        root = self.sessions_dir / f"{self.id}-{uuid.uuid4().hex[:12]}"
        root.mkdir(parents=True)
        return root

    def release(self) -> None:
        """Remove every folder of this process (whatever a race left in them) and drop the locks."""
        _remove_data(self.data_dir, self.id, whole=self.own_data_dir, tidy=True)
        if self.run_root is not None:
            remove_tree(self.run_root)
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()


def _remove_data(data_dir: Path, instance: str, *, whole: bool = False, tidy: bool = False) -> None:
    """Remove an instance's folders in ``data_dir`` (all of ``data_dir`` when it was the instance's own);
    ``tidy``: also the shared folders left empty (at a clean stop; a reclaiming pool is using them)."""
    if whole:
        remove_tree(data_dir)
        return
    for folder in (data_dir / "sessions").glob(f"{instance}-*"):
        remove_tree(folder)
    for shared in ("staging", "trash"):
        remove_tree(data_dir / f".{shared}" / instance)
    with contextlib.suppress(FileNotFoundError):
        (data_dir / ".pools" / f"{instance}{LOCK}").unlink()
    if not tidy:
        return
    for shared in (".staging", ".trash", ".pools", "sessions"):
        with contextlib.suppress(OSError):
            (data_dir / shared).rmdir()  # only when empty: another pool may share this data directory


def _kill_kernels_of(run_root: Path) -> int:
    """SIGKILL every process of ours whose command line names ``run_root`` (a dead pool's session kernels:
    the interpreter inside the sandbox, which takes the sandbox with it). Returns how many."""
    needle = os.fsencode(str(run_root)) + b"/"
    uid = os.getuid()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != uid or needle not in Path(entry.path, "cmdline").read_bytes():
                continue
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return killed


def reclaim(data_dir: Path) -> None:
    """Kill and remove what pools that died without cleaning up left: in /tmp, and in ``data_dir``."""
    uid = os.getuid()
    parent = Path(RUN_PARENT)
    for root in parent.glob(f"{RUN_PREFIX}*") if parent.is_dir() else ():
        with contextlib.suppress(OSError):
            if not root.is_dir() or root.is_symlink() or root.stat().st_uid != uid:
                continue
        lock = _take_if_dead(root / LOCK)
        if lock is None:
            continue  # a live pool's (or not a run root at all)
        try:
            killed = _kill_kernels_of(root)
            try:
                owner = json.loads((root / OWNER).read_text())
            except (OSError, ValueError):
                owner = {}
            if isinstance(owner.get("data_dir"), str) and isinstance(owner.get("id"), str):
                _remove_data(Path(owner["data_dir"]), owner["id"], whole=bool(owner.get("own_data_dir")))
            remove_tree(root)
            logger.info("reclaimed what a stopped pool (pid %s) left: %s%s", owner.get("pid", "?"), root,
                        f", {killed} session kernel process(es) killed" if killed else "")
        finally:
            os.close(lock)
    for lock_file in (data_dir / ".pools").glob(f"*{LOCK}"):
        lock = _take_if_dead(lock_file)
        if lock is None:
            continue
        try:
            _remove_data(data_dir, lock_file.name[: -len(LOCK)])
            logger.info("reclaimed the session folders a stopped pool left in %s", data_dir)
        finally:
            os.close(lock)
