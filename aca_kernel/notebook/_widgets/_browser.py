"""FileBrowser: the session's files in /mnt/data as a sortable table with upload, preview, download, delete."""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..._exceptions import ResourceNotFoundError
from ._format import (
    MOUNT,
    SORT_KEYS,
    describe_client,
    error_message,
    format_time,
    human_size,
    is_directory,
    join_remote,
    parent_path,
    redact_urls,
    sort_files,
    type_label,
    visible,
)
from ._selection import LINK_LIMIT, PREVIEW_BYTES, SelectionPanel
from ._tasks import TaskRunner
from ._transfers import TransferList
from ._upload import UploadPanel

if TYPE_CHECKING:
    from ..._client import SessionsClient
    from ..._models import RemoteFile

__all__ = ["FileBrowser"]

logger = logging.getLogger("aca_kernel.widgets")

_COLUMNS = (("name", "Name"), ("size", "Size"), ("modified", "Modified"), ("type", "Type"))
# Scoped to the widget's class; an HTML widget's <style> applies to the page, so every rule starts with it.
_STYLE = """<style>
.aca-file-browser .aca-file-name, .aca-file-browser .aca-sort { justify-content: flex-start; text-align: left;
  overflow: hidden; text-overflow: ellipsis; }
.aca-file-browser .aca-files-title .aca-nowrap { white-space: nowrap; }
.aca-file-browser .aca-cell { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.aca-file-browser .aca-cell-box, .aca-file-browser .aca-cell-box > .widget-html-content {
  min-width: 0; overflow: hidden; }
.aca-file-browser .aca-sort { font-weight: bold; }
.aca-file-browser .aca-sort-size { justify-content: flex-end; text-align: right; }
.aca-file-browser .aca-upload { border-top: 1px solid var(--jp-border-color2, #e0e0e0); margin-top: 6px;
  padding-top: 6px; }
.aca-file-browser .aca-csv { border-collapse: collapse; }
.aca-file-browser .aca-csv th, .aca-file-browser .aca-csv td { padding: 2px 10px; text-align: left;
  border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); }
.aca-file-browser a.aca-download-link { color: var(--jp-content-link-color, #1976d2); text-decoration: underline;
  margin: 0 8px; }
</style>"""
_STATUS_COLORS = {"error": "var(--jp-error-color1, #c62828)", "ok": "var(--jp-success-color1, #2e7d32)",
                  "info": "var(--jp-ui-font-color2, #616161)"}


class FileBrowser(w.VBox):
    """Browse, upload, preview, download and delete the files of one ACA session.

    ```python
    from aca_kernel import SessionsClient
    from aca_kernel.widgets import FileBrowser
    FileBrowser(client=SessionsClient(endpoint, credential))
    FileBrowser()   # in a notebook with the extension loaded: the current default session
    ```

    Network work runs in worker threads, so the widget (and the kernel) stay responsive during transfers;
    ``wait()`` blocks until they are done. ``register_callback(fn)`` calls ``fn(browser)`` whenever the
    selection changes.
    """

    #: maximum number of rows drawn; a folder with more entries says how many were left out
    max_rows = 500
    #: bytes read from a text, CSV or JSON file for its preview
    preview_bytes = PREVIEW_BYTES
    #: largest file offered as a browser download link (the file travels inside the page, base64-encoded)
    link_limit = LINK_LIMIT

    def __init__(self, client: SessionsClient | None = None, *, description: str | None = None, path: str = "",
                 sort_by: str = "name", ascending: bool = True, on_activity: Callable[[], Any] | None = None,
                 **kwargs: Any) -> None:
        if sort_by not in SORT_KEYS:
            raise ValueError(f"sort_by must be one of {', '.join(SORT_KEYS)}, not {sort_by!r}")
        if client is None:
            client, description, on_activity = _context_client(description, on_activity)
        self._client = client
        # on_activity: called after each operation that reached the service (the context's keep-alive uses it).
        self._tasks = TaskRunner(self._on_task_error, on_activity)
        self._lock = threading.RLock()
        self._callbacks: list[Callable[[FileBrowser], Any]] = []
        self._files: list[RemoteFile] = []
        self._selected: RemoteFile | None = None
        self._sort_key = sort_by
        self._ascending = ascending
        self._list_generation = 0
        self._status_kind = "info"
        self._status_text = ""
        self._path = path.strip("/")

        self._title = w.HTML(self._title_html(redact_urls(description or describe_client(client))))
        self._up_button = w.Button(icon="arrow-up", tooltip="Up one folder", layout=w.Layout(width="3em"))
        self._location = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self._refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="List the files again",
                                        layout=w.Layout(width="8em"))
        self._toolbar = w.HBox([self._up_button, self._location, self._refresh_button],
                               layout=w.Layout(align_items="center"))
        self._sort_buttons = {key: w.Button(description=label, tooltip=f"Sort by {label.lower()}",
                                            layout=w.Layout(width="auto"))
                              for key, label in _COLUMNS}
        for key, button in self._sort_buttons.items():  # headers aligned like their columns
            button.add_class("aca-sort")
            if key == "size":
                button.add_class("aca-sort-size")
        # Narrow minimums, so that all four columns fit a notebook in a 900 px window (with Lab's side panel
        # open); wider outputs give the name and type columns the room.
        self._table = w.GridBox(layout=w.Layout(
            grid_template_columns="minmax(8em, 2fr) minmax(4.5em, 6em) minmax(8.5em, 9.5em) minmax(6em, 1fr)",
            grid_gap="2px 8px", max_height="24em", overflow="auto", align_items="center"))
        self._status = w.HTML()
        self._transfers = TransferList()
        self._selection = SelectionPanel(self)
        self._uploads = UploadPanel(self)
        self._row_widgets: list[w.Widget] = []

        guard = self._tasks.guard
        self._up_button.on_click(guard(self._on_up_button_click))
        self._refresh_button.on_click(guard(self._on_refresh_button_click))
        for key, button in self._sort_buttons.items():
            button.on_click(guard(lambda _b, key=key: self._on_sort_button_click(key)))

        super().__init__([self._title, self._toolbar, self._table, self._status, self._selection,
                          self._uploads, self._transfers], **kwargs)
        self.add_class("aca-file-browser")
        self._render_location()
        self._render_table()
        self.refresh()

    # ---------------------------------------------------------------- public state and API
    @property
    def client(self) -> SessionsClient:
        return self._client

    @property
    def path(self) -> str:
        """The folder shown, relative to /mnt/data ('' is /mnt/data itself)."""
        return self._path

    @property
    def files(self) -> list[RemoteFile]:
        """The entries of the folder, in display order."""
        with self._lock:
            return list(self._files)

    @property
    def selected(self) -> RemoteFile | None:
        return self._selected

    @property
    def sort_key(self) -> str:
        return self._sort_key

    @property
    def ascending(self) -> bool:
        return self._ascending

    @property
    def supports_folders(self) -> bool:
        """True on every api version (2024-02-02-preview has folders through nested file names)."""
        return True

    @property
    def status(self) -> str:
        """The status line as plain text (the last message, error or success)."""
        return self._status_text

    @property
    def status_kind(self) -> str:
        """'info', 'ok' or 'error'."""
        return self._status_kind

    @property
    def busy(self) -> list[str]:
        """Keys of the operations running now, e.g. ``['upload:data.csv']``."""
        return self._tasks.keys

    def register_callback(self, callback: Callable[[FileBrowser], Any]) -> None:
        """Call ``callback(browser)`` whenever the selection changes."""
        self.on_change(callback)

    def on_change(self, callback: Callable[[FileBrowser], Any], remove: bool = False) -> None:
        """Like ``register_callback``; ``remove=True`` unregisters (the ipywidgets ``on_click`` convention)."""
        if remove:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def refresh(self, *, quiet: bool = False) -> None:
        """List the folder again (in a worker thread); ``quiet`` keeps the status line as it is."""
        with self._lock:
            self._list_generation += 1
            generation, folder = self._list_generation, self._path
        self._refresh_button.disabled = True
        self._tasks.start(f"list:{generation}", self._list_worker, generation, folder, quiet)

    def navigate(self, path: str) -> None:
        """Show another folder (relative to /mnt/data)."""
        path = path.strip("/")
        with self._lock:
            self._path = path
            self._files = []
        self.select(None)
        self._uploads.folder_changed()
        self._render_location()
        self._render_table()
        self.refresh()

    def up(self) -> None:
        if self._path:
            self.navigate(parent_path(self._path))

    def sort_by(self, key: str, ascending: bool | None = None) -> None:
        """Sort by 'name', 'size', 'modified' or 'type'; the same key again flips the direction."""
        if key not in SORT_KEYS:
            raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, not {key!r}")
        if ascending is None:
            ascending = not self._ascending if key == self._sort_key else True
        with self._lock:
            self._sort_key, self._ascending = key, ascending
            self._files = sort_files(self._files, key, ascending)
        self._render_table()

    def select(self, name: str | None) -> None:
        """Select a file of the current folder by name (None clears); a folder name opens that folder."""
        entry = None
        if name is not None:
            entry = next((f for f in self.files if f.name == name), None)
            if entry is None:
                self.show_status(f"{join_remote(self._path, name)} is not in this folder; refresh the list.",
                                 "error")
                return
            if is_directory(entry):
                self.navigate(join_remote(self._path, entry.name))
                return
        if entry == self._selected and entry is not None:
            return
        self._selected = entry
        self._render_table()
        self._selection.show(entry)
        for callback in list(self._callbacks):
            try:
                callback(self)
            except Exception as exc:  # a user callback must not break the widget
                logger.exception("file browser callback failed")
                self.show_status(f"Callback {getattr(callback, '__name__', callback)!s} failed: "
                                 f"{error_message(exc)}", "error")

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until every running operation has finished; False if ``timeout`` passed first."""
        return self._tasks.wait(timeout)

    def show_status(self, message: str, kind: str = "info") -> None:
        """Show one line in the status line ('info', 'ok' or 'error')."""
        self._status_text, self._status_kind = message, kind
        color = _STATUS_COLORS.get(kind, _STATUS_COLORS["info"])
        icon = {"error": "⚠ ", "ok": "✓ "}.get(kind, "")
        self._status.value = (f"<div class='aca-status aca-status-{kind}' style='color:{color}'>"
                              f"{icon}{html.escape(message)}</div>")

    def close(self) -> None:
        # getattr: ipywidgets also calls close() from __del__, even when __init__ raised half-way.
        parts = [*getattr(self, "_row_widgets", ()), *getattr(self, "_sort_buttons", {}).values()]
        parts += [getattr(self, name, None) for name in ("_title", "_up_button", "_location", "_refresh_button",
                                                         "_toolbar", "_table", "_status", "_selection",
                                                         "_uploads")]
        transfers = getattr(self, "_transfers", None)
        if transfers is not None:
            parts += [*transfers.rows, transfers]
        for part in parts:
            if part is not None:
                part.close()
        super().close()

    # ---------------------------------------------------------------- helpers for the panels
    @property
    def tasks(self) -> TaskRunner:
        return self._tasks

    @property
    def transfers(self) -> TransferList:
        return self._transfers

    def remote_path(self) -> str | None:
        """The ``path=`` argument for the client: None at the root (works on every api version)."""
        return self._path or None

    # ---------------------------------------------------------------- handlers
    def _on_up_button_click(self, _button: w.Button) -> None:
        self.up()

    def _on_refresh_button_click(self, _button: w.Button) -> None:
        self.refresh()

    def _on_sort_button_click(self, key: str) -> None:
        self.sort_by(key)

    def _on_name_button_click(self, name: str) -> None:
        self.select(name)

    def _on_task_error(self, key: str, exc: BaseException) -> None:
        self.show_status(error_message(exc), "error")
        if isinstance(exc, ResourceNotFoundError) and not key.startswith("list:"):
            # The file is gone (deleted by code in the session, or by another client): drop its row.
            self.refresh(quiet=True)

    # ---------------------------------------------------------------- workers
    def _list_worker(self, generation: int, folder: str, quiet: bool) -> None:
        try:
            files = visible(self._client.list_files(path=folder or None), folder)
        finally:
            if generation == self._list_generation:
                self._refresh_button.disabled = False
        with self._lock:
            if generation != self._list_generation:
                return  # the user navigated or refreshed meanwhile; a newer listing wins
            self._files = sort_files(files, self._sort_key, self._ascending)
            names = {f.name for f in self._files}
        if self._selected is not None and self._selected.name not in names:
            self.select(None)
        elif self._selected is not None:
            self._selected = next(f for f in self._files if f.name == self._selected.name)
        self._render_table()
        if quiet:
            return
        count = len(files)
        where = MOUNT + ("/" + folder if folder else "")
        self.show_status(f"{count} item{'s' if count != 1 else ''} in {where}", "info")

    # ---------------------------------------------------------------- rendering
    @staticmethod
    def _title_html(description: str) -> str:
        # Lines break between words only: "2024-02-02-preview" or an identifier never splits at its hyphens.
        words = " ".join(f"<span class='aca-nowrap'>{html.escape(word)}</span>" for word in description.split())
        return (f"{_STYLE}<div class='aca-files-title'><b>Files in {MOUNT}</b> "
                f"<span style='color:var(--jp-ui-font-color2,#616161)'>— {words}</span></div>")

    def _render_location(self) -> None:
        self._location.value = f"<code>{html.escape(MOUNT + ('/' + self._path if self._path else ''))}</code>"
        self._up_button.disabled = not self._path

    def _render_table(self) -> None:
        with self._lock:
            files = list(self._files)
            old = self._row_widgets
            self._row_widgets = []
            for key, label in _COLUMNS:
                arrow = (" ▲" if self._ascending else " ▼") if key == self._sort_key else ""
                self._sort_buttons[key].description = label + arrow
            cells: list[w.Widget] = list(self._sort_buttons.values())
            for entry in files[: self.max_rows]:
                cells.extend(self._row(entry))
            if not files:
                cells.append(self._note("This folder is empty. Upload files below."))
            elif len(files) > self.max_rows:
                cells.append(self._note(f"Showing {self.max_rows} of {len(files)} entries."))
            self._table.children = tuple(cells)
        for widget in old:
            widget.close()

    def _note(self, text: str) -> w.HTML:
        note = w.HTML(f"<i>{html.escape(text)}</i>", layout=w.Layout(grid_column="1 / -1"))
        self._row_widgets.append(note)
        return note

    def _row(self, entry: RemoteFile) -> list[w.Widget]:
        folder = is_directory(entry)
        chosen = self._selected is not None and entry.name == self._selected.name
        name = w.Button(description=entry.name, icon="folder" if folder else "file",
                        tooltip=("Open " if folder else "Select ") + join_remote(self._path, entry.name),
                        button_style="info" if chosen else "", layout=w.Layout(width="auto"))
        name.add_class("aca-file-name")
        name.on_click(self._tasks.guard(lambda _b, n=entry.name: self._on_name_button_click(n)))
        size = w.HTML(f"<div style='text-align:right'>{human_size(entry.size) if not folder else ''}</div>")
        modified = w.HTML(f"<div class='aca-cell'>{html.escape(format_time(entry.last_modified))}</div>")
        label = html.escape(type_label(entry))
        kind = w.HTML(f"<div class='aca-cell' title='{label}'>{label}</div>", layout=w.Layout(min_width="0"))
        # The HTML widget's content box would grow to the text's width and clip it without the ellipsis
        # (a flex item keeps min-width: auto): .aca-cell-box lets it shrink to the column, so .aca-cell cuts.
        kind.add_class("aca-cell-box")
        row = [name, size, modified, kind]
        self._row_widgets.extend(row)
        return row


def _context_client(description: str | None,
                    on_activity: Callable[[], Any] | None) -> tuple[Any, str | None, Callable[[], Any] | None]:
    """The current IPython shell's default session (what ``%aca_files`` shows) when no client is given."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise ValueError("FileBrowser needs client=SessionsClient(...) outside IPython/Jupyter.")
    from .._context import get_context

    ctx = get_context(shell)
    state = ctx.session()
    return state.client, description or ctx.describe(), on_activity or getattr(state, "touch", None)

