"""A session's /mnt/data on the host: name checks, listing, streamed uploads, downloads, deletes.

Nothing here may touch a path outside the session's directory: every name is normalised (a leading
``/mnt/data/`` is stripped, ``..`` and other absolute paths are refused) and the resolved real path (after
symlinks, which session code can create) must stay inside the session root.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mimetypes
import os
import secrets
import stat as statmod
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from . import errors
from .tree import disk_name, remove_tree, walk

logger = logging.getLogger("aca_kernel.emulator")

__all__ = ["MAX_UPLOAD_BYTES", "FileEntry", "SessionFiles", "Upload", "normalize_name", "storage_error"]

MAX_UPLOAD_BYTES = 128 * 1024 * 1024
MOUNT = "/mnt/data"
# Linux's NAME_MAX: one path segment, in bytes
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class FileEntry:
    """A file or directory in /mnt/data; ``relpath`` is relative to /mnt/data ("a/b.txt")."""

    relpath: str
    is_dir: bool
    size: int | None
    modified: datetime
    content_type: str | None

    @property
    def name(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.relpath.rsplit("/", 1)[0] if "/" in self.relpath else ""


def normalize_name(name: str | None, path: str | None = None, *, target: str = "filename") -> str:
    """``path`` + ``name`` as a clean path relative to /mnt/data ("" is /mnt/data itself).

    Accepts ``/mnt/data/x`` (LlamaIndex and Semantic Kernel send absolute names, LangChain's bash tool sends
    ``path=/mnt/data``); refuses anything that would leave /mnt/data.
    """
    parts: list[str] = []
    for piece, what in ((path, "path"), (name, target)):
        if not piece:
            continue
        if "\x00" in piece:
            raise errors.SessionRequestValidationFailed(f"The {what} contains a NUL character.", target=what)
        if piece == MOUNT or piece.startswith(MOUNT + "/"):
            piece = piece[len(MOUNT):]
        elif piece.startswith("/") and parts:
            raise errors.SessionRequestValidationFailed(
                f"The {what} {piece!r} is absolute; give it relative to the path, or as /mnt/data/...",
                target=what,
            )
        elif piece.startswith("/"):
            raise errors.SessionRequestValidationFailed(
                f"The {what} {piece!r} is outside /mnt/data; session files can only live under /mnt/data.",
                target=what,
            )
        for seg in piece.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                raise errors.SessionRequestValidationFailed(
                    f"The {what} {piece!r} contains '..'; files can only be addressed inside /mnt/data.",
                    target=what,
                )
            if len(seg.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
                raise errors.SessionRequestValidationFailed(
                    f"The {what} has a name of {len(seg.encode('utf-8', 'surrogateescape'))} bytes "
                    f"({seg[:40]!r}...); a file or directory name can have at most {MAX_NAME_BYTES} bytes.",
                    target=what,
                )
            parts.append(seg)
    return "/".join(parts)


def storage_error(exc: OSError, what: str) -> errors.ServiceError | None:
    """The service error for a failed write or read of the local disk, or None when it is not one of those."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.InsufficientStorage(
            f"The local session pool's disk is full: {what} could not be stored. Free space on the disk that holds "
            "the pool's --data-dir (or delete files in the session) and try again.", target="file",
        )
    if exc.errno == errno.ENAMETOOLONG:
        return errors.SessionRequestValidationFailed(f"The path of {what} is too long for the disk.",
                                                     target="filename")
    return None


def _content_type(name: str) -> str:
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def _entry(relpath: str, st: os.stat_result, is_dir: bool) -> FileEntry:
    return FileEntry(
        relpath=relpath,
        is_dir=is_dir,
        size=None if is_dir else st.st_size,
        modified=datetime.fromtimestamp(st.st_mtime, timezone.utc),
        content_type=None if is_dir else _content_type(relpath),
    )


class SessionFiles:
    """The directory that a session sees as /mnt/data."""

    def __init__(self, root: Path, staging: Path, trash: Path | None = None) -> None:
        self.root = root
        self._staging = staging
        self._trash = trash

    def _real_root(self) -> str:
        return os.path.realpath(self.root)

    def _resolve(self, rel: str, *, follow_last: bool = True) -> str:
        """The host path for ``rel``, refusing anything whose real path is outside the session root."""
        root = self._real_root()
        if "%" in rel:
            rel = self._on_disk(root, rel)
        host = os.path.join(root, rel) if rel else root
        if follow_last:
            real = os.path.realpath(host)
        else:
            # DELETE acts on a symlink itself, so only its parent directory has to be inside the root.
            real = os.path.join(os.path.realpath(os.path.dirname(host)), os.path.basename(host))
        if real != root and not real.startswith(root + os.sep):
            raise self._outside(rel)
        return real

    @staticmethod
    def _on_disk(root: str, rel: str) -> str:
        """``rel`` with each segment that a listing showed escaped (a name that is not UTF-8) mapped back."""
        parts: list[str] = []
        for seg in rel.split("/"):
            parts.append(disk_name(os.path.join(root, *parts), seg))
        return "/".join(parts)

    def _outside(self, rel: str) -> errors.SessionRequestValidationFailed:
        return errors.SessionRequestValidationFailed(
            f"/mnt/data/{rel} leads outside /mnt/data (through a symbolic link); refusing to touch it.",
            target="filename",
        )

    def _not_a_file(self, rel: str) -> errors.SessionRequestValidationFailed:
        return errors.SessionRequestValidationFailed(
            f"/mnt/data/{rel} is a directory; only files can be downloaded.", target="filename"
        )

    def _missing(self, rel: str) -> errors.FileNotFound:
        return errors.FileNotFound(f"/mnt/data/{rel} does not exist in this session.", target="filename")

    def stat(self, rel: str) -> FileEntry:
        host = self._resolve(rel)
        try:
            if host == self._real_root():
                st = os.stat(host)
            else:
                with self._in_parent(host, rel) as (parent_fd, name):
                    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(rel) from None
        return _entry(rel, st, statmod.S_ISDIR(st.st_mode))

    def listdir(self, rel: str = "", *, recursive: bool = False) -> list[FileEntry]:
        """Entries of the directory ``rel`` (files and directories), sorted by path."""
        host = self._resolve(rel)
        if not os.path.exists(host):
            raise errors.FileNotFound(f"The directory /mnt/data/{rel} does not exist in this session.",
                                      target="path")
        if not os.path.isdir(host):
            raise errors.SessionRequestValidationFailed(
                f"/mnt/data/{rel} is a file, not a directory; list its parent directory instead.", target="path"
            )
        out: list[FileEntry] = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # vanished meanwhile: nothing to show
            self._list(self._open_dir(host, rel), rel, recursive, out, files_only=False)
        return out

    def list_all_files(self) -> list[FileEntry]:
        """Every regular file under /mnt/data, recursively, with paths relative to it (the v1 listing)."""
        out: list[FileEntry] = []
        with contextlib.suppress(FileNotFoundError):  # the session was deleted meanwhile
            self._list(self._open_dir(self._real_root(), ""), "", True, out, files_only=True)
        return out

    @staticmethod
    def _list(fd: int, rel: str, recursive: bool, out: list[FileEntry], *, files_only: bool) -> None:
        """Entries under the directory open as ``fd`` (closed by the walk), at any depth, names shown escaped
        when they are not UTF-8."""
        for parents, name, is_dir, st in walk(fd, recursive):
            if files_only and is_dir:
                continue
            out.append(_entry("/".join([rel, *parents, name] if rel else [*parents, name]), st, is_dir))

    def open_download(self, rel: str) -> tuple[BinaryIO, int]:
        """A regular file opened for streaming back, and its size."""
        if not rel:
            raise errors.SessionRequestValidationFailed("A file name is required.", target="filename")
        host = self._resolve(rel)
        if host == self._real_root():  # a link to /mnt/data itself
            raise self._not_a_file(rel)
        try:
            with self._in_parent(host, rel) as (parent_fd, name):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent_fd)
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(rel) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the file itself became a symlink after the check
                raise self._outside(rel) from None
            raise
        st = os.fstat(fd)
        if not statmod.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._not_a_file(rel) if statmod.S_ISDIR(st.st_mode) else self._missing(rel)
        return os.fdopen(fd, "rb"), st.st_size

    def delete(self, rel: str) -> None:
        """Delete a file, a symlink, or a directory with everything in it."""
        if not rel:
            raise errors.SessionRequestValidationFailed("A file name is required; /mnt/data itself cannot be "
                                                        "deleted (delete the session instead).", target="filename")
        host = self._resolve(rel, follow_last=False)
        doomed: str | None = None
        try:
            with self._in_parent(host, rel) as (parent_fd, name):
                if not statmod.S_ISDIR(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=parent_fd)
                elif (doomed := self._to_trash(parent_fd, name)) is None:
                    remove_tree(f"/proc/self/fd/{parent_fd}/{name}")
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(rel) from None
        if doomed is not None:
            remove_tree(doomed)  # callers run delete() in a worker thread: a big tree takes a while

    def _to_trash(self, parent_fd: int, name: str) -> str | None:
        """Move a directory out of the session at once, so its code cannot refill it; its new path, or None
        where there is no trash on the same disk."""
        if self._trash is None:
            return None
        target = self._trash / f"rm-{secrets.token_hex(8)}"
        try:
            os.rename(name, target, src_dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return None
        return str(target)

    def open_upload(self, rel: str, limit: int = MAX_UPLOAD_BYTES) -> Upload:
        if not rel:
            raise errors.SessionRequestValidationFailed("The upload has no file name; the multipart part "
                                                        "'file' needs a filename.", target="filename")
        self._resolve(rel)  # refuse early, before any byte is stored
        return Upload(self, rel, limit)

    def _commit(self, rel: str, tmp: str) -> FileEntry:
        if not self.root.is_dir():
            raise errors.FileNotFound("The session was deleted while the file was uploading; upload it again.",
                                      target="filename")
        host = self._resolve(rel)
        try:
            # Session code may swap a checked directory for a symlink at any moment: the parents are opened
            # one by one without following links, and the file is renamed relative to the last of them.
            with self._in_parent(host, rel, create=True) as (parent_fd, name):
                with contextlib.suppress(FileNotFoundError):
                    if statmod.S_ISDIR(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
                        raise errors.SessionRequestValidationFailed(
                            f"/mnt/data/{rel} is a directory; choose another file name.", target="filename"
                        )
                os.replace(tmp, name, dst_dir_fd=parent_fd)
        except (NotADirectoryError, FileExistsError):
            raise errors.SessionRequestValidationFailed(
                f"A parent of /mnt/data/{rel} is a file, not a directory.", target="filename"
            ) from None
        except OSError as exc:
            raise storage_error(exc, f"/mnt/data/{rel}") or errors.SessionRequestValidationFailed(
                f"Cannot store /mnt/data/{rel}: {exc.strerror}.", target="filename"
            ) from None
        return self.stat(rel)

    @contextlib.contextmanager
    def _in_parent(self, host: str, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent directory, last name) of ``host``, a resolved path inside the root."""
        fd = self._open_dir(os.path.dirname(host), rel, create=create)
        try:
            yield fd, os.path.basename(host)
        finally:
            os.close(fd)

    def _open_dir(self, real_dir: str, rel: str, *, create: bool = False) -> int:
        """A descriptor of ``real_dir`` (a resolved directory on the way to ``rel``); ``create`` makes missing ones.

        Each component is opened with O_NOFOLLOW, so a symlink planted after ``_resolve`` is refused instead of
        leading the request out of the session.
        """
        root = self._real_root()
        parts = [seg for seg in Path(os.path.relpath(real_dir, root)).parts if seg != "."]
        if ".." in parts:  # real_dir is not inside the root (the root itself has no parent here)
            raise self._outside(rel)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for seg in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(seg, dir_fd=fd)
                try:
                    child = os.open(seg, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except NotADirectoryError:
                    if statmod.S_ISLNK(os.stat(seg, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise self._outside(rel) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def move_into(self, other: SessionFiles) -> None:
        """Move every entry into ``other`` (an empty directory) and drop this directory."""
        for name in os.listdir(self.root):
            os.replace(self.root / name, other.root / name)
        self.remove()

    def remove(self) -> None:
        try:
            remove_tree(self.root)
        except OSError as exc:
            logger.warning("could not remove the session directory %s: %s", self.root, exc)


class Upload:
    """A file being received: bytes go to a staging file, renamed into /mnt/data only when complete."""

    def __init__(self, files: SessionFiles, rel: str, limit: int) -> None:
        self.rel = rel
        self.size = 0
        self.too_large = False
        self._files = files
        self._limit = limit
        fd, self._tmp = tempfile.mkstemp(prefix="up-", dir=files._staging)
        self._fh = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        if self.too_large:
            return
        self.size += len(data)
        if self.size > self._limit:
            self.too_large = True
            self.discard()
            return
        self._fh.write(data)

    def close(self) -> None:
        """The part is complete: its descriptor is released (a request with many parts holds one at a time)."""
        self._fh.close()

    def commit(self, files: SessionFiles | None = None) -> FileEntry:
        """Move the file into place in ``files`` (the session's current directory: it may have changed
        while the upload ran, when the session claimed a pre-started kernel)."""
        self._fh.close()
        try:
            return (files or self._files)._commit(self.rel, self._tmp)
        finally:
            self.discard()

    def discard(self) -> None:
        if not self._fh.closed:
            with contextlib.suppress(OSError):  # a full disk fails the flush: the file goes anyway
                self._fh.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)
