"""Directory trees that session code made: walked and removed without recursion, names shown whatever their bytes.

Session code can build a tree thousands of levels deep, name files with bytes that are not UTF-8, and move
directories while the pool walks them. Everything here therefore works on descriptors, never follows a symlink,
keeps at most two directories open, and holds no Python recursion.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat as statmod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_to_bytes

__all__ = ["disk_name", "display_name", "remove_tree", "walk"]

logger = logging.getLogger("aca_kernel.emulator")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# A tree that session code keeps refilling while it is removed is given up after this many passes.
_MAX_PASSES = 100


def display_name(name: str) -> str:
    """A file name as the API shows it: as is when it is UTF-8; otherwise each byte that is not as ``%XX``
    (and ``%`` itself as ``%25``), so that the listing is valid JSON and the name can be sent back."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    # os.fsdecode turned each undecodable byte into a surrogate U+DC80..U+DCFF
    return "".join(f"%{ord(c) - 0xDC00:02X}" if 0xDC80 <= ord(c) <= 0xDCFF else "%25" if c == "%" else c
                   for c in name)


def disk_name(parent: str, segment: str) -> str:
    """The name on disk for a path segment sent by a client: the segment itself when it exists, else the
    non-UTF-8 name that ``display_name`` shows as ``segment``."""
    if "%" not in segment or os.path.lexists(os.path.join(parent, segment)):
        return segment
    raw = unquote_to_bytes(segment)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return os.fsdecode(raw)
    return segment  # a UTF-8 name: display_name never escapes those, so this is just a missing file


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _scan(fd: int) -> list[tuple[str, bool, os.stat_result]]:
    """(name, is a directory, lstat) of each entry of the directory open as ``fd``, sorted by name."""
    out = []
    with os.scandir(fd) as it:
        for e in it:
            try:
                # Symlinks are not followed: a link out of /mnt/data must not reveal what it points at.
                out.append((e.name, e.is_dir(follow_symlinks=False), e.stat(follow_symlinks=False)))
            except OSError:
                continue  # vanished while listing
    out.sort(key=lambda item: item[0])
    return out


def walk(fd: int, recursive: bool) -> Iterator[tuple[list[str], str, bool, os.stat_result]]:
    """(display names of the parent directories, display name, is a directory, lstat) for every entry under
    the directory open as ``fd`` (closed at the end), depth first in name order.

    Only one directory is open at a time: the walk climbs back up through ``..`` and checks that it arrived in
    the directory it came from (device and inode), so session code moving directories meanwhile cannot lead it
    out of the tree; the walk then ends early rather than guess.
    """
    frames: list[tuple[list[str], tuple[int, int], Iterator[tuple[str, bool, os.stat_result]]]] = []
    try:
        frames.append(([], _ident(fd), iter(_scan(fd))))
        while frames:
            parents, _, entries = frames[-1]
            for name, is_dir, st in entries:
                shown = display_name(name)
                yield parents, shown, is_dir, st
                if not (is_dir and recursive):
                    continue
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # vanished, or swapped for a symlink, meanwhile
                os.close(fd)
                fd = child
                frames.append(([*parents, shown], _ident(fd), iter(_scan(fd))))
                break
            else:
                frames.pop()
                if frames:
                    parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                    os.close(fd)
                    fd = parent
                    if _ident(fd) != frames[-1][1]:
                        logger.info("a directory moved while it was listed; the listing stops there")
                        return
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
            raise
        # a directory that vanished or became unreadable while listing: nothing (more) to show
    finally:
        os.close(fd)


def remove_tree(path: str | Path) -> bool:
    """Delete ``path`` (a directory, a file or a symlink) and everything under it; True when it is gone.

    Each subdirectory is first renamed up to the top of the tree, so the walk never goes deeper than two
    levels (two descriptors, no recursion) however deep the tree was. Symlinks are removed, never followed.
    """
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not statmod.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    top = os.open(path, _DIR_FLAGS)
    try:
        emptied = _empty(top)
    finally:
        os.close(top)
    if not emptied:
        logger.warning("could not empty %s: something keeps writing into it", path)
        return False
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)
        return False
    return True


def _empty(top: int) -> bool:
    """Remove everything in the directory open as ``top``; False if it kept being refilled."""
    for _ in range(_MAX_PASSES):
        pending = []
        for name, is_dir, _ in _scan(top):
            if is_dir:
                pending.append(name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=top)
        if not pending:
            return True
        while pending:
            name = pending.pop()
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=top)
            except FileNotFoundError:
                continue
            try:
                for child, child_is_dir, _ in _scan(sub):
                    if child_is_dir:  # moved up next to its parent: the tree gets shallower, never deeper
                        moved = f".aca-rm-{secrets.token_hex(8)}"
                        os.rename(child, moved, src_dir_fd=sub, dst_dir_fd=top)
                        pending.append(moved)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(child, dir_fd=sub)
            finally:
                os.close(sub)
            try:
                os.rmdir(name, dir_fd=top)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                # refilled meanwhile: the next pass over the top level takes it again
    return False
