"""`aca-sessions files`: list, upload, download and delete files in a session's /mnt/data."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aca_kernel.cli import EXIT_OK, CLIError, _client, _errors, _note

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


def _files_put(client: SessionsClient, args: argparse.Namespace) -> None:
    source = Path(args.local)
    remote = args.remote or source.name
    with _transfer_bar(args, source.stat().st_size, f"upload {remote}") as bar:
        info = client.upload_file(source, remote, progress=bar)
    _note(f"uploaded {source} to /mnt/data/{info.path}")


def _files_get(client: SessionsClient, args: argparse.Namespace) -> None:
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
    if args.files_command == "put" and not Path(args.local).is_file():
        raise CLIError(f"no such local file: {args.local}")
    if args.files_command == "get" and args.local not in (None, "-"):
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
    put = fsub.add_parser("put", parents=[conn], help="upload a local file")
    put.add_argument("local", metavar="LOCAL")
    put.add_argument("remote", nargs="?", metavar="REMOTE", help="name under /mnt/data (default: LOCAL's name)")
    put.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    get = fsub.add_parser("get", parents=[conn], help="download a file")
    get.add_argument("remote", metavar="REMOTE")
    get.add_argument("local", nargs="?", metavar="LOCAL", help="file or directory (default: ./NAME; '-' = stdout)")
    get.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    rm = fsub.add_parser("rm", parents=[conn], help="delete files")
    rm.add_argument("remote", nargs="+", metavar="REMOTE")
