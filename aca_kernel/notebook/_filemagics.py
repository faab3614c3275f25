"""Line magics for the session's files in /mnt/data.

```
%aca_upload LOCAL [REMOTE]     send a file from this machine (REMOTE ending in / keeps the local name)
%aca_download REMOTE [LOCAL]   fetch a file (LOCAL: a file name or an existing folder; default: here)
%aca_rm REMOTE [REMOTE ...]    delete files
%aca_ls [PATH]                 list a folder (a table; ``files = %aca_ls`` gives the RemoteFile list)
%aca_files [PATH]              the FileBrowser widget
```

Every magic takes ``--session NAME`` (``-s``) for a named session. Mistakes in the command line raise
``UsageError``; failures of the service show as one line (the error class and its message), without a
traceback of our internals, and still fail the cell so notebook runs stop there.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .._validation import MAX_UPLOAD_BYTES
from ._display import error_line
from ._widgets._format import (
    MOUNT,
    error_message,
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

__all__ = ["FileListing", "FileMagics"]

logger = logging.getLogger("aca_kernel.magics")


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
        lines = [f"{self.location} ({len(rows)} item{'s' if len(rows) != 1 else ''})"]
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
        return (f"<p><code>{html.escape(self.location)}</code> ({len(rows)} items)</p><table>"
                "<thead><tr><th style='text-align:left'>Name</th><th>Size</th><th>Modified</th><th>Type</th></tr>"
                f"</thead><tbody>{body}</tbody></table>")


def _service_failure(exc: BaseException) -> NoReturn:
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


@magics_class
class FileMagics(Magics):
    """``%aca_upload``, ``%aca_download``, ``%aca_rm``, ``%aca_ls`` and ``%aca_files``."""

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
            _service_failure(exc)

    def _progress(self, total: int | None, desc: str) -> Any:
        if _in_widget_frontend(self.shell):
            from IPython.display import display

            from ._widgets._transfers import TransferRow

            row = TransferRow(desc, total)
            display(row)
            return row
        from .._progress import progress_bar

        return progress_bar(total, desc)

    def _run(self, desc: str, total: int | None, fn: Callable[[Any], Any]) -> Any:
        bar = self._progress(total, desc)
        try:
            result = fn(bar)
        except Exception as exc:
            bar.fail(error_message(exc))
            _service_failure(exc)
        bar.succeed("done")
        return result

    @staticmethod
    def _split(remote: str) -> tuple[str, str]:
        try:
            return split_remote(remote)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    # ------------------------------------------------------------------ magics
    @magic_arguments()
    @argument("local", help="file on this machine")
    @argument("remote", nargs="?", default=None,
              help=f"name under {MOUNT} (default: the local name; ending in / means a folder)")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_upload(self, line: str) -> None:
        """Upload a local file to the session's /mnt/data."""
        args = parse_argstring(self.aca_upload, line)
        local = Path(args.local).expanduser()
        if not local.is_file():
            what = "is a folder; upload its files one by one" if local.is_dir() else "does not exist"
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
                return state.client.upload_file(fh, name, path=folder or None, progress=bar)

        self._run(f"upload {name}", size, send)
        state.touch()
        print(f"Uploaded {local} ({human_size(size)}) to {MOUNT}/{target}")

    @magic_arguments()
    @argument("remote", help=f"file under {MOUNT}")
    @argument("local", nargs="?", default=None,
              help="file name or existing folder on this machine (default: the current folder)")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_download(self, line: str) -> None:
        """Download a file from the session's /mnt/data to this machine."""
        args = parse_argstring(self.aca_download, line)
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

    @magic_arguments()
    @argument("remote", nargs="+", help=f"files under {MOUNT}")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_rm(self, line: str) -> None:
        """Delete files from the session's /mnt/data."""
        args = parse_argstring(self.aca_rm, line)
        targets = [self._split(r) for r in args.remote]
        state = self._session(args.session)
        for folder, name in targets:
            try:
                state.client.delete_file(name, path=folder or None)
            except Exception as exc:
                _service_failure(exc)
            state.touch()
            print(f"Deleted {MOUNT}/{join_remote(folder, name)}")

    @magic_arguments()
    @argument("path", nargs="?", default="", help=f"folder under {MOUNT} (default: {MOUNT})")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_ls(self, line: str) -> FileListing:
        """List the files in the session's /mnt/data (or a folder in it)."""
        args = parse_argstring(self.aca_ls, line)
        folder = self._folder(args.path)
        state = self._session(args.session)
        try:
            files = state.client.list_files(path=folder or None)
        except Exception as exc:
            _service_failure(exc)
        state.touch()
        from ._widgets._format import sort_files

        return FileListing(sort_files(files), folder)

    @magic_arguments()
    @argument("path", nargs="?", default="", help=f"folder under {MOUNT} to open (v2 api versions)")
    @argument("--session", "-s", default=None, help="named session (default: the current one)")
    @line_magic
    def aca_files(self, line: str) -> None:
        """Show the file browser widget for the session's /mnt/data."""
        args = parse_argstring(self.aca_files, line)
        folder = self._folder(args.path)
        state = self._session(args.session)
        from IPython.display import display

        from ._widgets._browser import FileBrowser

        display(FileBrowser(client=state.client, description=self._context().describe(args.session), path=folder,
                            on_activity=state.touch))

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
