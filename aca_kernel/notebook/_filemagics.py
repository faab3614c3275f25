"""Line magics for the session's files in /mnt/data, folders, sync and packages.

```
%aca_upload [-r] LOCAL [REMOTE]     send a file (or, -r, a folder) from this machine
%aca_download [-r] REMOTE [LOCAL]   fetch a file (or, -r, a folder)
%aca_rm REMOTE [REMOTE ...]         delete files
%aca_ls [PATH]                      list a folder (a table; ``files = %aca_ls`` gives the RemoteFile list)
%aca_files [PATH]                   the FileBrowser widget
%aca_sync LOCAL_DIR [REMOTE_DIR]    send only what changed (--down: the other way; --delete: remove extras)
%aca_pip install SPEC...            install packages in the session from wheels resolved here
```

Arguments are split as a shell would (``%aca_upload "my file.csv"``). Every magic takes ``--session NAME``
(``-s``) for a named session. Mistakes in the command line raise ``UsageError``; failures of the service show as
one line (the error class and its message), without a traceback of our internals, and still fail the cell so
notebook runs stop there.
"""

from __future__ import annotations

import html
import logging
import os
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .._folders import (
    DEFAULT_EXCLUDES,
    HIDDEN_DIR,
    TreeResult,
    download_tree,
    upload_checked,
    upload_tree,
    walk_local,
    walk_remote,
)
from .._validation import MAX_UPLOAD_BYTES
from ._display import error_line
from ._widgets._format import (
    MOUNT,
    format_time,
    human_size,
    is_directory,
    join_remote,
    safe_local_path,
    split_remote,
    type_label,
)

if TYPE_CHECKING:
    from .._models import RemoteFile
    from ._context import SessionState

__all__ = ["FileListing", "FileMagics", "shell_split"]

logger = logging.getLogger("aca_kernel.magics")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class FileListing(list):  # type: ignore[type-arg]
    """The result of ``%aca_ls``: a list of ``RemoteFile`` that displays as a table."""

    def __init__(self, files: Iterable[RemoteFile], folder: str) -> None:
        super().__init__(files)
        self.folder = folder

    @property
    def location(self) -> str:
        return MOUNT + ("/" + self.folder if self.folder else "")

    def _rows(self) -> list[tuple[str, str, str, str]]:
        return [(f.name + ("/" if is_directory(f) else ""), "" if is_directory(f) else human_size(f.size),
                 format_time(f.last_modified), type_label(f)) for f in self]

    def __repr__(self) -> str:
        rows = self._rows()
        if not rows:
            return f"{self.location}: no files"
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"{self.location} ({_plural(len(rows), 'item')})"]
        for r in rows:
            lines.append(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = self._rows()
        if not rows:
            return f"<p><code>{html.escape(self.location)}</code>: no files</p>"
        body = "".join(
            f"<tr><td style='text-align:left'>{html.escape(n)}</td><td style='text-align:right'>{html.escape(s)}"
            f"</td><td>{html.escape(m)}</td><td>{html.escape(t)}</td></tr>" for n, s, m, t in rows)
        return (f"<p><code>{html.escape(self.location)}</code> ({_plural(len(rows), 'item')})</p><table>"
                "<thead><tr><th style='text-align:left'>Name</th><th>Size</th><th>Modified</th><th>Type</th></tr>"
                f"</thead><tbody>{body}</tbody></table>")


def shell_split(line: str) -> list[str]:
    """Split a magic's arguments as a shell would: quotes group words and are removed (``"my file.csv"``).

    On Windows backslashes are path separators, not escapes, so only the quotes are handled there.
    """
    try:
        if os.name != "nt":
            return shlex.split(line)
        return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] and w[0] in "\"'" else w
                for w in shlex.split(line, posix=False)]
    except ValueError as exc:  # "No closing quotation"
        raise UsageError(f"Cannot read the arguments ({exc}): close the quote, or escape it with \\.") from None


def parse_args(magic: Callable[..., Any], line: str, *, intermixed: bool = False) -> Any:
    """``parse_argstring`` with shell-style splitting (IPython's own splitting keeps the quotes); ``intermixed``
    lets options stand between positional arguments (``install -U pkg``), as pip's own command line does."""
    parser = magic.parser  # type: ignore[attr-defined]
    return (parser.parse_intermixed_args if intermixed else parser.parse_args)(shell_split(line))


def service_failure(exc: BaseException) -> NoReturn:
    """Re-raise ``exc`` so IPython shows one line (class and message) instead of a traceback.

    IPython renders an exception through its ``_render_traceback_`` when it has one; the exception itself
    stays intact (``%debug``, ``sys.last_value``) and the cell still counts as failed.
    """
    line = error_line(exc)
    try:
        exc._render_traceback_ = lambda: [line]  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exceptions with __slots__
        raise UsageError(line) from exc
    raise exc


def _in_widget_frontend(shell: Any) -> bool:
    """True inside a Jupyter kernel, where a progress widget can render; False in terminal IPython."""
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
    except ImportError:  # pragma: no cover
        return False
    return isinstance(shell, ZMQInteractiveShell)


def progress_display(shell: Any, total: int | None, desc: str) -> Any:
    """A progress bar for ``total`` bytes: a widget row in Jupyter, tqdm (or plain lines) in a terminal."""
    if _in_widget_frontend(shell):
        from IPython.display import display

        from ._widgets._transfers import TransferRow

        row = TransferRow(desc, total)
        display(row)
        return row
    from .._progress import progress_bar

    return progress_bar(total, desc)


class _LazyBar:
    """A progress callback whose bar appears with the first bytes: a request refused at once (404) shows only
    its error line, not also an empty bar. Called from the cell's own thread (where ``display`` works)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make, self._bar = make, None

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._bar is None:
            self._bar = self._make()
        self._bar(done, total)

    def succeed(self, text: str = "done") -> None:
        if self._bar is not None:
            self._bar.succeed(text)

    def fail(self, text: str = "failed") -> None:
        if self._bar is not None:
            self._bar.fail(text)


def _tree_failure(result: TreeResult) -> NoReturn:
    rel, exc = result.failed[0]
    more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
    try:
        exc.args = (f"{rel}: {exc}{more}",)
    except Exception:  # pragma: no cover
        pass
    service_failure(exc)


def _tree_target(source_name: str, dest: str | None) -> str:
    """Where a folder goes: ``dest`` itself, or ``dest/source_name`` when ``dest`` ends with '/'."""
    if dest is None:
        return source_name
    return dest.rstrip("/\\") + "/" + source_name if dest.endswith(("/", "\\")) else dest


@magics_class
class FileMagics(Magics):
    """``%aca_upload``, ``%aca_download``, ``%aca_rm``, ``%aca_ls``, ``%aca_files``, ``%aca_sync``, ``%aca_pip``."""

    # ------------------------------------------------------------------ plumbing
    def _context(self) -> Any:
        from ._context import get_context

        return get_context(self.shell)

    def _session(self, session: str | None) -> SessionState:
        try:
            return self._context().session(session)
        except UsageError:
            raise
        except Exception as exc:
            service_failure(exc)

    def _run(self, desc: str, total: int | None, fn: Callable[[Any], Any]) -> Any:
        bar = _LazyBar(lambda: progress_display(self.shell, total, desc))
        try:
            result = fn(bar)
        except Exception as exc:
            bar.fail("failed")  # the reason is the error line below, once
            service_failure(exc)
        bar.succeed("done")
        return result

    def _tree(self, desc: str, total: int | None, fn: Callable[[Any], TreeResult]) -> TreeResult:
        # Worker threads report progress, so the bar is made here, in the cell's thread.
        bar = progress_display(self.shell, total, desc) if total else None
        try:
            result = fn(bar)
        except Exception as exc:
            if bar is not None:
                bar.fail("failed")
            service_failure(exc)
        if bar is not None:
            bar.succeed("done") if result.ok else bar.fail(f"{len(result.failed)} failed")
        return result

    @staticmethod
    def _split(remote: str) -> tuple[str, str]:
        try:
            return split_remote(remote)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    @staticmethod
    def _folder(path: str) -> str:
        text = path.strip()
        if text in ("", "/", MOUNT, MOUNT + "/"):
            return ""
        try:
            head, tail = split_remote(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return join_remote(head, tail)

    @staticmethod
    def _excludes(extra: list[str] | None) -> tuple[str, ...]:
        if extra and "" in extra:  # --exclude '' : nothing excluded but our own hidden folder
            return (HIDDEN_DIR, *[e for e in extra if e])
        return (*DEFAULT_EXCLUDES, *(extra or ()))

    # ------------------------------------------------------------------ files
    @magic_arguments()
    @argument("local", help="file (or, with -r, folder) on this machine")
    @argument("remote", nargs="?", default=None,
              help=f"name under {MOUNT} (default: the local name; ending in / means into that folder)")
    @argument("-r", "--recursive", action="store_true", help="upload a folder with everything in it")
    @argument("--exclude", action="append", metavar="PATTERN",
              help=f"with -r: leave out names matching PATTERN (repeatable; always left out: {', '.join(DEFAULT_EXCLUDES)})")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_upload(self, line: str) -> None:
        """Upload a local file (or, with -r, a folder) to the session's /mnt/data."""
        args = parse_args(self.aca_upload, line)
        local = Path(args.local).expanduser()
        if args.recursive:
            return self._upload_folder(args, local)
        if not local.is_file():
            what = "is a folder; add -r to upload it with its contents" if local.is_dir() else "does not exist"
            raise UsageError(f"{args.local} {what}.")
        size = local.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise UsageError(f"{args.local} is {human_size(size)}; the service accepts at most 128 MB per upload.")
        remote = args.remote or local.name
        if remote.endswith("/"):
            remote += local.name
        folder, name = self._split(remote)
        state = self._session(args.session)
        target = join_remote(folder, name)

        def send(bar: Any) -> Any:
            with local.open("rb") as fh:
                return upload_checked(state.client, fh, name, path=folder or None, progress=bar)

        self._run(f"upload {name}", size, send)
        state.touch()
        print(f"Uploaded {local} ({human_size(size)}) to {MOUNT}/{target}")
        return None

    def _upload_folder(self, args: Any, local: Path) -> None:
        if not local.is_dir():
            raise UsageError(f"{args.local} is not a folder." if local.exists() else f"{args.local} does not exist.")
        folder = self._folder(_tree_target(local.resolve().name, args.remote))
        files = walk_local(local, self._excludes(args.exclude))
        big = next((f for f in files if f.size > MAX_UPLOAD_BYTES), None)
        if big is not None:
            raise UsageError(f"{big.path} is {human_size(big.size)}; the service accepts at most 128 MB per file. "
                             f"Leave it out with --exclude {shlex.quote(big.path.name)}.")
        state = self._session(args.session)
        total = sum(f.size for f in files)
        where = f"{MOUNT}/{folder}" if folder else MOUNT
        result = self._tree(f"upload {local.name}/ ({_plural(len(files), 'file')})", total,
                            lambda bar: upload_tree(state.client, files, folder, progress=bar))
        state.touch()
        print(f"Uploaded {result.files} of {_plural(len(files), 'file')} ({human_size(result.bytes)}) "
              f"from {local} to {where}")
        if result.failed:
            _tree_failure(result)

    @magic_arguments()
    @argument("remote", help=f"file (or, with -r, folder) under {MOUNT}")
    @argument("local", nargs="?", default=None,
              help="file name or existing folder on this machine (default: the current folder)")
    @argument("-r", "--recursive", action="store_true", help="download a folder with everything in it")
    @argument("--exclude", action="append", metavar="PATTERN", help="with -r: leave out names matching PATTERN")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_download(self, line: str) -> None:
        """Download a file (or, with -r, a folder) from the session's /mnt/data to this machine."""
        args = parse_args(self.aca_download, line)
        if args.recursive:
            return self._download_folder(args)
        folder, name = self._split(args.remote)
        try:
            if args.local is None:
                target = safe_local_path(Path.cwd(), name)
            elif args.local.endswith(("/", "\\")) or Path(args.local).expanduser().is_dir():
                local_dir = Path(args.local).expanduser()
                if not local_dir.is_dir():
                    raise UsageError(f"The folder {args.local} does not exist on this machine.")
                target = safe_local_path(local_dir, name)
            else:
                target = Path(args.local).expanduser().absolute()
                if not target.parent.is_dir():
                    raise UsageError(f"The folder {target.parent} does not exist on this machine.")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        state = self._session(args.session)
        size = self._run(f"download {name}", None,
                         lambda bar: state.client.download_file(name, str(target), path=folder or None, progress=bar))
        state.touch()
        print(f"Downloaded {MOUNT}/{join_remote(folder, name)} ({human_size(int(size))}) to {target}")
        return None

    def _download_folder(self, args: Any) -> None:
        folder = self._folder(args.remote)
        if not folder and args.local is None:
            raise UsageError(f"Name a local folder for the whole of {MOUNT}: %aca_download -r {MOUNT} LOCAL_DIR")
        local = Path(_tree_target(folder.rsplit("/", 1)[-1], args.local)).expanduser()
        if local.exists() and not local.is_dir():
            raise UsageError(f"{local} is a file, not a folder, on this machine.")
        state = self._session(args.session)
        try:
            files = walk_remote(state.client, folder, self._excludes(args.exclude))
        except Exception as exc:
            service_failure(exc)
        known = [f.size for _, f in files]
        total = sum(s or 0 for s in known) if None not in known else None
        local.mkdir(parents=True, exist_ok=True)
        result = self._tree(f"download {folder or 'data'}/ ({_plural(len(files), 'file')})", total or None,
                            lambda bar: download_tree(state.client, files, folder, local, progress=bar))
        state.touch()
        print(f"Downloaded {result.files} of {_plural(len(files), 'file')} ({human_size(result.bytes)}) from "
              f"{MOUNT}{'/' + folder if folder else ''} to {local.absolute()}")
        if result.failed:
            _tree_failure(result)

    @magic_arguments()
    @argument("remote", nargs="+", help=f"files under {MOUNT}")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_rm(self, line: str) -> None:
        """Delete files from the session's /mnt/data."""
        args = parse_args(self.aca_rm, line)
        targets = [self._split(r) for r in args.remote]
        state = self._session(args.session)
        for folder, name in targets:
            try:
                state.client.delete_file(name, path=folder or None)
            except Exception as exc:
                service_failure(exc)
            state.touch()
            print(f"Deleted {MOUNT}/{join_remote(folder, name)}")

    @magic_arguments()
    @argument("path", nargs="?", default="", help=f"folder under {MOUNT} (default: {MOUNT})")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_ls(self, line: str) -> FileListing:
        """List the files in the session's /mnt/data (or a folder in it)."""
        args = parse_args(self.aca_ls, line)
        folder = self._folder(args.path)
        state = self._session(args.session)
        try:
            files = state.client.list_files(path=folder or None)
        except Exception as exc:
            service_failure(exc)
        state.touch()
        from ._widgets._format import sort_files, visible

        return FileListing(sort_files(visible(files, folder)), folder)

    @magic_arguments()
    @argument("path", nargs="?", default="", help=f"folder under {MOUNT} to open")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_files(self, line: str) -> None:
        """Show the file browser widget for the session's /mnt/data."""
        args = parse_args(self.aca_files, line)
        folder = self._folder(args.path)
        state = self._session(args.session)
        from IPython.display import display

        from ._widgets._browser import FileBrowser

        display(FileBrowser(client=state.client, description=self._context().describe(args.session), path=folder,
                            on_activity=state.touch))

    # ------------------------------------------------------------------ sync
    @magic_arguments()
    @argument("local", help="folder on this machine")
    @argument("remote", nargs="?", default=None,
              help=f"folder under {MOUNT} (default: the local folder's name; ending in / means into that folder)")
    @argument("--down", action="store_true", help="the other way: make the local folder match the session's")
    @argument("--delete", action="store_true", help="also delete what the source side does not have")
    @argument("--exclude", action="append", metavar="PATTERN",
              help=f"leave out names matching PATTERN (repeatable; always left out: {', '.join(DEFAULT_EXCLUDES)})")
    @argument("--dry-run", "-n", action="store_true", help="only say what would move")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_sync(self, line: str) -> None:
        """Send only what changed between a local folder and one in /mnt/data (size and SHA-256)."""
        from .._folders import sync_tree

        args = parse_args(self.aca_sync, line)
        local = Path(args.local).expanduser()
        if not args.down and not local.is_dir():
            raise UsageError(f"{args.local} is not a folder." if local.exists() else f"{args.local} does not exist.")
        if args.down and local.exists() and not local.is_dir():
            raise UsageError(f"{args.local} is a file, not a folder.")
        folder = self._folder(_tree_target(local.resolve().name, args.remote))
        state = self._session(args.session)
        where = f"{MOUNT}/{folder}" if folder else MOUNT
        if args.down:
            local.mkdir(parents=True, exist_ok=True)
        try:
            result = sync_tree(state.client, local, folder, down=args.down, delete=args.delete,
                               excludes=self._excludes(args.exclude), dry_run=args.dry_run,
                               progress_factory=lambda total, desc: progress_display(self.shell, total, desc))
        except Exception as exc:
            service_failure(exc)
        state.touch()
        arrow = f"{where} → {local}" if args.down else f"{local} → {where}"
        if args.dry_run:
            print(f"Would sync {arrow}: " + (", ".join(result.planned) if result.planned else "nothing to do"))
            return
        verb = "received" if args.down else "sent"
        deleted = f", deleted {result.deleted}" if args.delete else ""
        print(f"Synced {arrow}: {verb} {_plural(result.files, 'file')} ({human_size(result.bytes)}), "
              f"skipped {result.skipped} unchanged{deleted}"
              + (f", {len(result.failed)} failed" if result.failed else ""))
        if result.failed:
            _tree_failure(result)

    # ------------------------------------------------------------------ packages
    @magic_arguments()
    @argument("action", choices=["install", "list", "cache"],
              help="install: SPECs into the session; list: what %%aca_pip installed; cache: the wheel cache here")
    @argument("specs", nargs="*", metavar="SPEC", help="requirement specifiers, as for pip install")
    @argument("-r", "--requirement", action="append", default=[], metavar="FILE",
              help="install from a requirements file (repeatable)")
    @argument("--remote", action="store_true",
              help="run pip in the session itself (for pools with outbound network)")
    @argument("-U", "--upgrade", action="store_true",
              help="upgrade the named packages to the newest matching version, even when the session has them")
    @argument("--no-cache", action="store_true", help="download wheels again instead of using the cache here")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_pip(self, line: str) -> None:
        """Install packages in the session: wheels are resolved and downloaded here, then installed there."""
        from . import _pip

        args = parse_args(self.aca_pip, line, intermixed=True)
        if args.action == "cache":
            print(_pip.cache_summary(purge="purge" in args.specs))
            return
        state = self._session(args.session)
        if args.action == "list":
            _pip.show_installed(state)
            return
        if not args.specs and not args.requirement:
            raise UsageError("Nothing to install: %aca_pip install SPEC... or -r requirements.txt")
        for req in args.requirement:
            if not Path(req).expanduser().is_file():
                raise UsageError(f"No requirements file {req} on this machine.")
        try:
            _pip.install(self.shell, state, args.specs, [Path(r).expanduser() for r in args.requirement],
                         remote=args.remote, use_cache=not args.no_cache, upgrade=args.upgrade)
        except UsageError:
            raise
        except Exception as exc:
            service_failure(exc)
        finally:
            state.touch()

