"""Folders in /mnt/data: recursive upload, download and sync, built from the client's per-file calls.

Shared by the CLI (``aca-sessions files put/get -r``) and the notebook magics (``%aca_upload -r``,
``%aca_download -r``, ``%aca_sync``); no notebook imports here.

Every api version gets the same behaviour from the calls it has:

* listing a tree: ``list_files(recursive=True)`` on 2025-10-02-preview and on 2024-02-02-preview (whose listing
  already holds every file under its relative name); a walk folder by folder on 2024-10-02 and 2025-02-02;
* nested names: ``path=`` on the v2 versions; on 2024-02-02-preview the name itself carries the folders. The
  service's handling of such names is undocumented for that version, so every upload checks the name it was
  stored under and stops with one clear line if the service dropped the folders;
* sync compares sizes and SHA-256 digests computed *in the session* (one execution), so unchanged files are
  never moved.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import RECURSIVE_API_VERSIONS, V1_API_VERSIONS
from ._exceptions import NotSupportedError, ResourceNotFoundError
from ._validation import split_remote_name

if TYPE_CHECKING:
    from ._client import SessionsClient
    from ._models import RemoteFile

__all__ = [
    "DEFAULT_EXCLUDES",
    "HIDDEN_DIR",
    "INTERNAL_PREFIX",
    "LocalFile",
    "TreeResult",
    "download_tree",
    "excluded",
    "is_internal",
    "join",
    "local_target",
    "remote_manifest",
    "run_json_snippet",
    "sha256_file",
    "snippet",
    "sync_tree",
    "upload_checked",
    "upload_tree",
    "walk_local",
    "walk_remote",
]

logger = logging.getLogger("aca_kernel.folders")

#: aca-sessions' own files in /mnt/data (the wheels of %aca_pip): never listed, synced or downloaded with a tree
HIDDEN_DIR = ".aca-sessions"
# Files the session runtime and the magics write for a moment (live output, --out/-i values) start with this.
INTERNAL_PREFIX = ".aca-"
#: left out of folder transfers and sync unless named with --exclude '' (version control, caches, our own files)
DEFAULT_EXCLUDES = (".git", "__pycache__", ".ipynb_checkpoints", ".DS_Store", HIDDEN_DIR, INTERNAL_PREFIX + "*")
#: files moved at once; each is one HTTP request, so small files gain most
WORKERS = 4

Progress = Callable[[int, "int | None"], None]


def join(folder: str, rel: str) -> str:
    """``('a', 'b/c.txt') -> 'a/b/c.txt'``, relative to /mnt/data."""
    folder = folder.strip("/")
    return f"{folder}/{rel}" if folder else rel


def excluded(rel: str, patterns: Iterable[str]) -> bool:
    """True when a component of ``rel`` (``'a/b/c.txt'``), or the whole of it, matches a glob pattern."""
    parts = rel.split("/")
    for pattern in patterns:
        if not pattern:
            continue
        if "/" in pattern.strip("/"):
            if fnmatch.fnmatchcase(rel, pattern.strip("/")):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


# --- the local side -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    rel: str  # 'sub/name.txt', '/' separated, relative to the folder walked
    path: Path
    size: int


def walk_local(root: str | os.PathLike[str], excludes: Sequence[str] = DEFAULT_EXCLUDES) -> list[LocalFile]:
    """Every regular file under ``root`` (symlinks to files followed, symlinked folders not entered), sorted."""
    base = Path(root)
    out: list[LocalFile] = []
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = sorted(d for d in dirnames if not excluded(join(rel_dir, d), excludes))
        for name in sorted(filenames):
            rel = join(rel_dir, name)
            path = Path(dirpath) / name
            if excluded(rel, excludes) or not path.is_file():
                continue  # sockets, fifos and broken links are not files to send
            out.append(LocalFile(rel, path, path.stat().st_size))
    return out


def local_target(root: Path, rel: str) -> Path:
    """Where a remote file ``rel`` lands under ``root``; ValueError when the name would leave ``root``.

    Remote names come from the service: no empty, '.', '..' or absolute components, no backslashes or NUL, and
    the resolved result (symlinks followed) must stay inside the resolved root.
    """
    parts = rel.split("/")
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise ValueError(f"refusing to save {rel!r}: the name would escape the folder {str(root)!r}")
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if base not in target.parents:
        raise ValueError(f"refusing to save {rel!r}: the name would escape the folder {str(root)!r}")
    return target


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# --- the remote side ------------------------------------------------------------------------------------------


def remote_rel(f: RemoteFile, folder: str) -> str:
    """The path of a listed file relative to ``folder``."""
    folder = folder.strip("/")
    path = f.path
    return path[len(folder) + 1:] if folder and path.startswith(folder + "/") else path


def walk_remote(client: SessionsClient, folder: str, excludes: Sequence[str] = DEFAULT_EXCLUDES
                ) -> list[tuple[str, RemoteFile]]:
    """``(rel, file)`` for every file under ``folder`` (relative to /mnt/data), on any api version, sorted.

    A folder that does not exist raises ``ResourceNotFoundError`` (an empty folder is an empty list).
    """
    folder = folder.strip("/")
    version = client.api_version
    if version in V1_API_VERSIONS or version in RECURSIVE_API_VERSIONS:
        files = [f for f in client.list_files(path=folder or None, recursive=True) if f.type != "directory"]
        if not files and folder and version in V1_API_VERSIONS:
            _require_v1_folder(client, folder)
    else:
        files = []
        pending = [folder]
        while pending:  # no recursive listing on this version: one listing per folder
            current = pending.pop()
            for f in client.list_files(path=current or None):
                if f.type == "directory":
                    if not excluded(remote_rel(f, folder), excludes):
                        pending.append(f.path)
                else:
                    files.append(f)
    out = [(remote_rel(f, folder), f) for f in files]
    return sorted(((rel, f) for rel, f in out if not excluded(rel, excludes)), key=lambda item: item[0])


def _require_v1_folder(client: SessionsClient, folder: str) -> None:
    """2024-02-02-preview lists files only: an empty result for a folder means it has no files (or is absent)."""
    parent, _, name = folder.rpartition("/")
    entries = client.list_files(path=parent or None)
    if not any(e.name == name for e in entries):
        raise ResourceNotFoundError(f"No folder /mnt/data/{folder} in session {client.session_id}.",
                                    status_code=404)


# The digests are computed where the files are: one execution returns size and SHA-256 of each file under the
# folder, hashing only files whose size matches the other side (a size difference already says "changed").
# Parameters travel as one JSON literal, never spliced into code; the function removes itself afterwards.
_MANIFEST = """\
def __aca_sessions_manifest(spec):
    import hashlib, json, os
    base = os.path.realpath("/mnt/data")
    root = os.path.realpath(os.path.join(base, spec["folder"]))
    if root != base and not root.startswith(base + os.sep):
        return json.dumps({"error": "the folder is outside /mnt/data"})
    sizes, skip, out = spec["sizes"], set(spec["skip"]), {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if (rel_dir + d) not in skip]
        for name in filenames:
            rel, path = rel_dir + name, os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            size, digest = os.path.getsize(path), None
            if sizes.get(rel) == size:
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                digest = h.hexdigest()
            out[rel] = [size, digest]
    return json.dumps({"files": out})
"__ACA_MANIFEST__ " + globals().pop("__aca_sessions_manifest")(__import__("json").loads({literal}))"""
_MARK = "__ACA_MANIFEST__ "


def snippet(template: str, spec: Any) -> str:
    """``template`` with ``{literal}`` replaced by ``spec`` as a Python string literal of its JSON text."""
    return template.replace("{literal}", repr(json.dumps(spec)))


def run_json_snippet(client: SessionsClient, code: str, mark: str, what: str,
                     timeout: float | None = None) -> dict[str, Any]:
    """Execute a snippet that prints ``mark`` + one JSON object on a line of its own; that object."""
    from ._exceptions import HttpResponseError

    result = client.execute(code, timeout=timeout)
    # The answer is the snippet's value: v2 cuts stdout at 4096 characters, a value comes whole (a str raw).
    line = result.result if isinstance(result.result, str) and result.result.startswith(mark) else None
    if not result.succeeded or line is None:
        detail = (result.stderr or result.stdout or "no output").strip().splitlines()
        raise HttpResponseError(f"Could not {what} in session {client.session_id}: "
                                f"{detail[-1] if detail else 'no output'}")
    return json.loads(line[len(mark):])


def remote_manifest(client: SessionsClient, folder: str, sizes: dict[str, int],
                    skip: Iterable[str] = ()) -> dict[str, tuple[int, str | None]]:
    """``{rel: (size, sha256 or None)}`` of the files under /mnt/data/``folder``, computed in the session.

    A digest is computed only for files whose size equals ``sizes[rel]``; ``skip`` names folders (relative to
    ``folder``) not to enter. A folder that does not exist is empty.
    """
    spec = {"folder": folder.strip("/"), "sizes": sizes, "skip": sorted(skip)}
    answer = run_json_snippet(client, snippet(_MANIFEST, spec), _MARK,
                              f"list /mnt/data/{folder.strip('/')}")
    if "error" in answer:
        raise ValueError(str(answer["error"]))
    return {rel: (int(v[0]), v[1]) for rel, v in answer["files"].items()}


# --- moving trees ----------------------------------------------------------------------------------------------


@dataclass
class TreeResult:
    """What a folder transfer or sync did; ``failed`` holds ``(rel, exception)``."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: list[tuple[str, BaseException]] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)  # with dry_run: what would move

    @property
    def ok(self) -> bool:
        return not self.failed


class _Aggregate:
    """One progress callback for many files moved in parallel: the sum of each file's bytes."""

    def __init__(self, total: int | None, sink: Progress | None) -> None:
        self.total, self.sink = total, sink
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()

    def for_file(self, rel: str) -> Progress | None:
        if self.sink is None:
            return None

        def report(done: int, _total: int | None = None) -> None:
            with self._lock:
                self._done[rel] = done
                value = sum(self._done.values())
            self.sink(value, self.total)  # type: ignore[misc]

        return report


def _run_parallel(items: Sequence[Any], work: Callable[[Any], int], result: TreeResult,
                  label: Callable[[Any], str], workers: int = WORKERS) -> TreeResult:
    """``work(item) -> bytes`` for each item, ``workers`` at a time; failures are collected, not raised.

    KeyboardInterrupt (a kernel interrupt) cancels what has not started and waits for what has.
    """
    lock = threading.Lock()

    def one(item: Any) -> None:
        try:
            moved = work(item)
        except Exception as exc:
            logger.debug("transfer of %s failed", label(item), exc_info=True)
            with lock:
                result.failed.append((label(item), exc))
            if isinstance(exc, NotSupportedError):
                raise  # the service cannot keep folders: stop the whole transfer
            return
        with lock:
            result.files += 1
            result.bytes += moved

    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix="aca-tree")
    futures: list[Future[None]] = []
    try:
        futures = [pool.submit(one, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            for f in futures:
                f.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return result


def upload_checked(client: SessionsClient, source: Any, remote: str, *, path: str | None = None,
                   progress: Progress | None = None) -> RemoteFile:
    """``client.upload_file(source, remote, path=path)``, then the check every upload makes: the service stored
    the file under the name it was sent. 2024-02-02-preview keeps folders only in the file name, and the service's
    handling of such names is undocumented; if it dropped them, NotSupportedError says so in one line."""
    info = client.upload_file(source, remote, path=path, progress=progress)
    target = join(*split_remote_name(remote, path))
    if info.path != target:
        raise NotSupportedError(
            f"The service stored {target!r} as {info.path!r}: it keeps no folders in file names on "
            f"api-version {client.api_version}. Use api-version 2024-10-02-preview or later for folders.")
    return info


def upload_tree(client: SessionsClient, files: Sequence[LocalFile], folder: str, *,
                progress: Progress | None = None, result: TreeResult | None = None) -> TreeResult:
    """Upload ``files`` to /mnt/data/``folder``/``rel``, keeping their relative paths."""
    result = result or TreeResult()
    agg = _Aggregate(sum(f.size for f in files), progress)

    def send(item: LocalFile) -> int:
        target = join(folder, item.rel)
        with item.path.open("rb") as fh:
            upload_checked(client, fh, target, progress=agg.for_file(item.rel))
        return item.size

    return _run_parallel(files, send, result, lambda item: item.rel)


def download_tree(client: SessionsClient, files: Sequence[tuple[str, RemoteFile]], folder: str, root: Path, *,
                  progress: Progress | None = None, result: TreeResult | None = None) -> TreeResult:
    """Download ``(rel, file)`` pairs from /mnt/data/``folder`` into ``root``/``rel`` (folders created)."""
    result = result or TreeResult()
    known = [f.size for _, f in files]
    agg = _Aggregate(sum(s for s in known if s) if None not in known else None, progress)

    def fetch(item: tuple[str, RemoteFile]) -> int:
        rel, _ = item
        target = local_target(root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The client writes NAME.part-… beside the target and renames it when complete.
        return int(client.download_file(join(folder, rel), os.fspath(target), progress=agg.for_file(rel)))

    return _run_parallel(files, fetch, result, lambda item: item[0])


def sync_tree(client: SessionsClient, local_root: Path, folder: str, *, down: bool = False, delete: bool = False,
              excludes: Sequence[str] = DEFAULT_EXCLUDES, dry_run: bool = False,
              progress_factory: Callable[[int | None, str], Any] | None = None) -> TreeResult:
    """Make /mnt/data/``folder`` match ``local_root`` (or, ``down``, the reverse), moving only what differs.

    Unchanged means same size and same SHA-256 (computed in the session for remote files). Nothing is deleted
    unless ``delete``; excluded names are neither moved nor deleted. ``progress_factory(total, label)`` makes the
    progress callback of the transfer (it may also be a context manager's value; see the callers).
    """
    folder = folder.strip("/")
    local = {f.rel: f for f in walk_local(local_root, excludes)} if local_root.is_dir() else {}
    skip_dirs = [d for d in excludes if d and "/" not in d and not any(c in d for c in "*?[")]
    remote = {rel: v for rel, v in remote_manifest(client, folder, {r: f.size for r, f in local.items()},
                                                    skip_dirs).items() if not excluded(rel, excludes)}
    same = {rel for rel, (size, digest) in remote.items()
            if rel in local and local[rel].size == size and digest is not None
            and sha256_file(local[rel].path) == digest}
    result = TreeResult(skipped=len(same))
    if not down:
        send = [f for rel, f in local.items() if rel not in same]
        stale = sorted(set(remote) - set(local)) if delete else []
        result.planned = [f.rel for f in send] + [f"delete {rel}" for rel in stale]
        if dry_run:
            return result
        if send:
            bar = progress_factory(sum(f.size for f in send), f"sync {len(send)} file(s) to /mnt/data/{folder}") \
                if progress_factory else None
            _with_bar(bar, lambda cb: upload_tree(client, send, folder, progress=cb, result=result))
        for rel in stale:
            try:
                client.delete_file(join(folder, rel))
                result.deleted += 1
            except Exception as exc:
                result.failed.append((rel, exc))
        return result
    fetch = sorted(rel for rel in remote if rel not in same)
    stale_local = sorted(set(local) - set(remote)) if delete else []
    result.planned = fetch + [f"delete {rel}" for rel in stale_local]
    if dry_run:
        return result
    if fetch:
        entries = [(rel, _StubFile(join(folder, rel), remote[rel][0])) for rel in fetch]
        bar = progress_factory(sum(remote[rel][0] for rel in fetch), f"sync {len(fetch)} file(s) from "
                               f"/mnt/data/{folder}") if progress_factory else None
        _with_bar(bar, lambda cb: download_tree(client, entries, folder, local_root, progress=cb,  # type: ignore[arg-type]
                                                result=result))
    for rel in stale_local:
        try:
            local[rel].path.unlink()
            result.deleted += 1
        except OSError as exc:
            result.failed.append((rel, exc))
    return result


@dataclass(frozen=True)
class _StubFile:
    """Enough of a RemoteFile for ``download_tree`` when the size came from the session's manifest."""

    path: str
    size: int | None


def _with_bar(bar: Any, run: Callable[[Any], TreeResult]) -> None:
    """Run a transfer with ``bar`` as its progress, closing it as succeeded or failed."""
    if bar is None:
        run(None)
        return
    try:
        outcome = run(bar)
    except BaseException:
        getattr(bar, "fail", lambda *_: None)("failed")
        raise
    if outcome.failed:
        getattr(bar, "fail", lambda *_: None)(f"{len(outcome.failed)} failed")
    else:
        getattr(bar, "succeed", lambda *_: None)("done")


def is_internal(path: str) -> bool:
    """True for aca-sessions' own files in /mnt/data (never shown, never synced): ``.aca-sessions/...``, ``.aca-*``."""
    first = path.strip("/").removeprefix("mnt/data/").split("/", 1)[0]
    return first == HIDDEN_DIR or first.startswith(INTERNAL_PREFIX)
