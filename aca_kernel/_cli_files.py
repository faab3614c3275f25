"""`aca-sessions files`: list, upload, download and delete files in a session's /mnt/data."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aca_kernel.cli import EXIT_OK, EXIT_USAGE, CLIError, _client, _errors, _note

if TYPE_CHECKING:
    from aca_kernel import SessionsClient

__all__ = ["add_files_parser", "cmd_files"]



def _files_ls(client: SessionsClient, args: argparse.Namespace) -> None:
    from aca_kernel._progress import format_bytes

    files = sorted(client.list_files(path=args.path, recursive=args.recursive), key=lambda f: f.path)
    if args.json:
        print(json.dumps([{"path": f.path, "type": f.type, "size": f.size,
                           "last_modified": f.last_modified.isoformat() if f.last_modified else None}
                          for f in files]))
        return
    for f in files:
        size = "-" if f.size is None else format_bytes(f.size)
        when = f.last_modified.strftime("%Y-%m-%d %H:%M") if f.last_modified else "-"
        print(f"{size:>10}  {when:16}  {f.path}{'/' if f.type == 'directory' else ''}")
    if not files:
        _note("no files in /mnt/data" + (f"/{args.path}" if args.path else ""))


def _transfer_bar(args: argparse.Namespace, total: int | None, desc: str) -> Any:
    """The progress bar of a file transfer (stderr), or a no-op with --quiet."""
    from aca_kernel._progress import progress_bar

    return contextlib.nullcontext() if args.quiet else progress_bar(total, desc)


def _tree_target(source_name: str, dest: str | None) -> str:
    """A folder goes to ``dest`` itself, or into it (``dest/source_name``) when ``dest`` ends with '/'."""
    if dest is None:
        return source_name
    return dest.rstrip("/") + "/" + source_name if dest.endswith("/") else dest


def _tree_outcome(result: Any, count: int, verb: str, where: str) -> None:
    from aca_kernel._progress import format_bytes

    _note(f"{verb} {result.files} of {count} file(s) ({format_bytes(result.bytes)}) {where}")
    if result.failed:
        rel, exc = result.failed[0]
        more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
        raise CLIError(f"{rel}: {exc}{more}")


def _excludes(args: argparse.Namespace) -> tuple[str, ...]:
    from aca_kernel._folders import DEFAULT_EXCLUDES

    return (*DEFAULT_EXCLUDES, *(args.exclude or ()))


def _put_tree(client: SessionsClient, args: argparse.Namespace) -> None:
    from aca_kernel._folders import upload_tree, walk_local
    from aca_kernel._validation import MAX_UPLOAD_BYTES, normalize_directory

    source = Path(args.local)
    folder = normalize_directory(_tree_target(source.resolve().name, args.remote))
    files = walk_local(source, _excludes(args))
    big = next((f for f in files if f.size > MAX_UPLOAD_BYTES), None)
    if big is not None:
        raise CLIError(f"{big.path} is over 128 MB, the service's limit per file; leave it out with --exclude",
                       EXIT_USAGE)
    with _transfer_bar(args, sum(f.size for f in files), f"upload {source.name}/") as bar:
        result = upload_tree(client, files, folder, progress=bar)
    _tree_outcome(result, len(files), "uploaded", f"from {source} to /mnt/data/{folder}".rstrip("/"))


def _get_tree(client: SessionsClient, args: argparse.Namespace) -> None:
    from aca_kernel._folders import download_tree, walk_remote
    from aca_kernel._validation import normalize_directory

    folder = normalize_directory(args.remote)
    if not folder and args.local is None:
        raise CLIError("name a local directory for the whole of /mnt/data: files get -r /mnt/data DIR", EXIT_USAGE)
    dest = Path(_tree_target(folder.rsplit("/", 1)[-1], args.local))
    files = walk_remote(client, folder, _excludes(args))
    known = [f.size for _, f in files]
    dest.mkdir(parents=True, exist_ok=True)
    with _transfer_bar(args, sum(s or 0 for s in known) if None not in known else None,
                       f"download {folder or 'data'}/") as bar:
        result = download_tree(client, files, folder, dest, progress=bar)
    _tree_outcome(result, len(files), "downloaded", f"from /mnt/data/{folder}".rstrip("/") + f" to {dest}")


def _files_put(client: SessionsClient, args: argparse.Namespace) -> None:
    if args.recursive:
        _put_tree(client, args)
        return
    from aca_kernel._folders import upload_checked

    source = Path(args.local)
    remote = args.remote or source.name
    with _transfer_bar(args, source.stat().st_size, f"upload {remote}") as bar:
        info = upload_checked(client, source, remote, progress=bar)
    _note(f"uploaded {source} to /mnt/data/{info.path}")


def _files_get(client: SessionsClient, args: argparse.Namespace) -> None:
    if args.recursive:
        _get_tree(client, args)
        return
    remote = args.remote
    if args.local == "-":
        sys.stdout.flush()
        client.download_file(remote, sys.stdout.buffer)  # streamed; stdout carries only the file's bytes
        sys.stdout.buffer.flush()
        return
    dest = Path(args.local or Path(remote).name)
    if dest.is_dir():
        dest = dest / Path(remote).name
    # The client writes beside the target and renames at the end: a failure never leaves a half-written file.
    with _transfer_bar(args, None, f"download {remote}") as bar:
        client.download_file(remote, dest, progress=bar)
    _note(f"downloaded /mnt/data/{remote.removeprefix('/mnt/data/')} to {dest}")


def _files_rm(client: SessionsClient, args: argparse.Namespace) -> None:
    for remote in args.remote:
        client.delete_file(remote)
        _note(f"removed /mnt/data/{remote.removeprefix('/mnt/data/')}")


_FILES = {"ls": _files_ls, "put": _files_put, "get": _files_get, "rm": _files_rm}


def cmd_files(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # Local mistakes first: no pool should start (or token be fetched) for a typo in a file name.
    if args.files_command == "put" and getattr(args, "recursive", False):
        if not Path(args.local).is_dir():
            raise CLIError(f"no such local directory: {args.local}")
    elif args.files_command == "put" and not Path(args.local).is_file():
        hint = " (a directory: add -r)" if Path(args.local).is_dir() else ""
        raise CLIError(f"no such local file: {args.local}{hint}")
    if args.files_command == "get" and getattr(args, "recursive", False):
        if args.local == "-":
            raise CLIError("get -r writes a directory, not stdout", EXIT_USAGE)
        if args.local is not None and Path(args.local).exists() and not Path(args.local).is_dir():
            raise CLIError(f"{args.local} is a file, not a directory")
    elif args.files_command == "get" and args.local not in (None, "-"):
        parent = Path(args.local).parent if not Path(args.local).is_dir() else Path(args.local)
        if not parent.is_dir():
            raise CLIError(f"no such local directory: {parent}")
    with _errors(), _client(args, for_files=True) as client:
        _FILES[args.files_command](client, args)
    return EXIT_OK


def add_files_parser(sub: Any, conn: argparse.ArgumentParser) -> None:
    """The `files` subcommand and its actions; ``conn`` holds the shared --endpoint/--session/--api-version."""
    files = sub.add_parser("files", help="list, upload, download and delete files in /mnt/data")
    fsub = files.add_subparsers(dest="files_command", metavar="ACTION", required=True)
    ls = fsub.add_parser("ls", parents=[conn], help="list files")
    ls.add_argument("path", nargs="?", help="directory under /mnt/data")
    ls.add_argument("-r", "--recursive", action="store_true", help="include sub-directories")
    ls.add_argument("--json", action="store_true", help="print JSON")
    put = fsub.add_parser("put", parents=[conn], help="upload a local file (-r: a directory)")
    put.add_argument("local", metavar="LOCAL")
    put.add_argument("remote", nargs="?", metavar="REMOTE",
                     help="name under /mnt/data (default: LOCAL's name; -r with a trailing /: into that directory)")
    put.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    get = fsub.add_parser("get", parents=[conn], help="download a file (-r: a directory)")
    get.add_argument("remote", metavar="REMOTE")
    get.add_argument("local", nargs="?", metavar="LOCAL", help="file or directory (default: ./NAME; '-' = stdout)")
    get.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    for p in (put, get):
        p.add_argument("-r", "--recursive", action="store_true", help="a directory with everything in it")
        p.add_argument("--exclude", action="append", metavar="PATTERN",
                       help="with -r: leave out names matching PATTERN (repeatable; .git, __pycache__, "
                            ".ipynb_checkpoints and .DS_Store always are)")
    rm = fsub.add_parser("rm", parents=[conn], help="delete files")
    rm.add_argument("remote", nargs="+", metavar="REMOTE")
