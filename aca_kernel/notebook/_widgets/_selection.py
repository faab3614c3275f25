"""The panel under the table for the selected file: preview, download (browser link or kernel folder), delete."""

from __future__ import annotations

import base64
import html
import mimetypes
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as w

from ._format import (
    MOUNT,
    csv_head_html,
    error_message,
    format_time,
    human_size,
    image_format,
    join_remote,
    pretty_json,
    preview_kind,
    safe_local_path,
    text_head,
    type_label,
)
from ._transfer import download_to_path, read_head

if TYPE_CHECKING:
    from ..._models import RemoteFile
    from ._browser import FileBrowser

__all__ = ["LINK_LIMIT", "PREVIEW_BYTES", "PREVIEW_IMAGE_BYTES", "SelectionPanel"]

#: bytes of a text/CSV/JSON file read for its preview
PREVIEW_BYTES = 64 * 1024
#: images are shown whole, so only up to this size
PREVIEW_IMAGE_BYTES = 8 * 1024 * 1024
#: a browser download link carries the file inside the page (base64, +33%), so it is kept small
LINK_LIMIT = 20 * 1024 * 1024

_BOX = ("max-height:20em;overflow:auto;border:1px solid var(--jp-border-color2,#ddd);"
        "padding:4px;font-size:var(--jp-code-font-size,12px)")


class SelectionPanel(w.VBox):
    """Details, preview and actions for ``host.selected``; hidden while nothing is selected."""

    def __init__(self, host: FileBrowser) -> None:
        self._host = host
        self._entry: RemoteFile | None = None
        self._preview_generation = 0
        self._lock = threading.Lock()
        self._details = w.HTML()
        self._preview = w.VBox(layout=w.Layout(max_width="100%"))
        self._link_button = w.Button(description="Download link", icon="link",
                                     tooltip=f"Make a browser download link (files up to {human_size(LINK_LIMIT)})")
        self._link = w.HTML()
        self._folder_text = w.Text(value=".", description="Kernel folder:", placeholder="folder on the kernel's machine",
                                   style={"description_width": "initial"}, layout=w.Layout(width="22em"))
        self._save_button = w.Button(description="Save to kernel", icon="download",
                                     tooltip="Download into the folder on the kernel's machine")
        self._delete_button = w.Button(description="Delete", icon="trash", button_style="danger",
                                       tooltip=f"Delete the file from {MOUNT}")
        self._confirm_text = w.HTML()
        self._confirm_button = w.Button(description="Confirm delete", button_style="danger")
        self._cancel_button = w.Button(description="Cancel")
        self._confirm_box = w.HBox([self._confirm_text, self._confirm_button, self._cancel_button],
                                   layout=w.Layout(display="none", align_items="center"))
        actions = w.HBox([self._link_button, self._link, self._folder_text, self._save_button,
                          self._delete_button], layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self._actions = actions
        guard = host.tasks.guard
        self._link_button.on_click(guard(self._on_link_button_click))
        self._save_button.on_click(guard(self._on_save_button_click))
        self._delete_button.on_click(guard(self._on_delete_button_click))
        self._confirm_button.on_click(guard(self._on_confirm_button_click))
        self._cancel_button.on_click(guard(self._on_cancel_button_click))
        super().__init__([self._details, self._preview, actions, self._confirm_box],
                         layout=w.Layout(display="none"))

    # ---------------------------------------------------------------- state
    @property
    def entry(self) -> RemoteFile | None:
        return self._entry

    @property
    def confirming(self) -> bool:
        return self._confirm_box.layout.display != "none"

    @property
    def preview_widget(self) -> w.Widget | None:
        return self._preview.children[0] if self._preview.children else None

    def show(self, entry: RemoteFile | None) -> None:
        """Show ``entry`` (None hides the panel) and start its preview."""
        self._entry = entry
        self._link.value = ""
        self._hide_confirm()
        self._set_preview(None)
        if entry is None:
            self.layout.display = "none"
            return
        self.layout.display = ""
        self._details.value = (
            f"<b>{html.escape(entry.name)}</b> — {html.escape(human_size(entry.size) or 'size unknown')}, "
            f"{html.escape(type_label(entry))}"
            + (f", modified {html.escape(format_time(entry.last_modified))}" if entry.last_modified else ""))
        with self._lock:
            self._preview_generation += 1
            generation = self._preview_generation
        self._set_preview(w.HTML("<i>Loading preview…</i>"))
        self._host.tasks.start(f"preview:{generation}", self._preview_worker, generation, entry,
                               self._host.remote_path())

    # ---------------------------------------------------------------- preview
    def _preview_worker(self, generation: int, entry: RemoteFile, folder: str | None) -> None:
        kind = preview_kind(entry)
        if kind == "other":
            self._apply_preview(generation, w.HTML(
                f"<i>No preview for {html.escape(type_label(entry))} files "
                f"({html.escape(human_size(entry.size) or 'size unknown')}). Download it to open it.</i>"))
            return
        if kind == "image" and entry.size is not None and entry.size > PREVIEW_IMAGE_BYTES:
            self._apply_preview(generation, w.HTML(
                f"<i>Image of {human_size(entry.size)}: previews show images up to "
                f"{human_size(PREVIEW_IMAGE_BYTES)}. Download it to view it.</i>"))
            return
        limit = PREVIEW_IMAGE_BYTES if kind == "image" else self._host.preview_bytes
        try:
            data, complete = read_head(self._host.client, entry.name, folder, limit)
        except Exception as exc:
            self._apply_preview(generation, w.HTML(
                f"<i>Preview unavailable: {html.escape(error_message(exc))}</i>"))
            raise
        self._apply_preview(generation, self._render_preview(entry, kind, data, complete))

    def _render_preview(self, entry: RemoteFile, kind: str, data: bytes, complete: bool) -> w.Widget:
        if kind == "image":
            if not complete:
                return w.HTML(f"<i>Image larger than {human_size(PREVIEW_IMAGE_BYTES)}; download it to view it.</i>")
            return w.Image(value=data, format=image_format(entry), layout=w.Layout(max_width="100%",
                                                                                   max_height="20em"))
        text = text_head(data, complete)
        if text is None:
            return w.HTML(f"<i>{html.escape(entry.name)} looks binary ({html.escape(human_size(entry.size))}); "
                          "no text preview.</i>")
        note = "" if complete else (f"<div><i>First {human_size(len(data))} of "
                                    f"{html.escape(human_size(entry.size) or 'a longer file')}.</i></div>")
        if kind == "csv":
            body = csv_head_html(text, complete)
        else:
            if kind == "json":
                text = pretty_json(text, complete)
            body = f"<pre style='margin:0;white-space:pre-wrap'>{html.escape(text)}</pre>"
        return w.HTML(f"{note}<div class='aca-preview' style='{_BOX}'>{body}</div>")

    def _apply_preview(self, generation: int, widget: w.Widget) -> None:
        with self._lock:
            current = generation == self._preview_generation
        if current:
            self._set_preview(widget)
        else:
            widget.close()  # the user selected another file meanwhile

    def _set_preview(self, widget: w.Widget | None) -> None:
        old = self._preview.children
        self._preview.children = (widget,) if widget is not None else ()
        for child in old:
            child.close()

    # ---------------------------------------------------------------- download link (to the browser)
    def _on_link_button_click(self, _button: w.Button) -> None:
        entry = self._entry
        if entry is None:
            return
        limit = self._host.link_limit
        if entry.size is not None and entry.size > limit:
            self._host.show_status(
                f"{entry.name} is {human_size(entry.size)}; browser download links are limited to "
                f"{human_size(limit)}. Use 'Save to kernel' or %aca_download instead.", "error")
            return
        remote = join_remote(self._host.path, entry.name)
        if not self._host.tasks.start(f"link:{remote}", self._link_worker, entry, self._host.remote_path()):
            self._host.show_status(f"A download link for {remote} is already being prepared.", "info")

    def _link_worker(self, entry: RemoteFile, folder: str | None) -> None:
        self._link_button.disabled = True
        try:
            with self._host.transfers.track(f"link {entry.name}", entry.size, done="ready") as row:
                limit = self._host.link_limit
                data, complete = read_head(self._host.client, entry.name, folder, limit)
                if not complete:
                    raise ValueError(f"{entry.name} is larger than {human_size(limit)}, the limit for browser "
                                     "download links; use 'Save to kernel' or %aca_download instead")
                row(len(data), len(data))
        finally:
            self._link_button.disabled = False
        mime = (entry.content_type or mimetypes.guess_type(entry.name)[0] or "application/octet-stream").split(";")[0]
        encoded = base64.b64encode(data).decode("ascii")
        if self._entry is not None and self._entry.name == entry.name:
            self._link.value = (f"<a class='aca-download-link' download=\"{html.escape(entry.name)}\" "
                                f"href=\"data:{html.escape(mime)};base64,{encoded}\">⬇ Save {html.escape(entry.name)} "
                                f"({html.escape(human_size(len(data)))})</a>")
        self._host.show_status(f"Download link for {entry.name} ready: click it to save the file.", "ok")

    # ---------------------------------------------------------------- download to the kernel's machine
    def _on_save_button_click(self, _button: w.Button) -> None:
        entry = self._entry
        if entry is None:
            return
        folder = self._folder_text.value.strip() or "."
        try:
            target = safe_local_path(folder, entry.name)
        except ValueError as exc:
            self._host.show_status(str(exc), "error")
            return
        if target.parent.exists() and not target.parent.is_dir():
            self._host.show_status(f"{folder} is a file, not a folder, on the kernel's machine.", "error")
            return
        remote = join_remote(self._host.path, entry.name)
        if not self._host.tasks.start(f"download:{remote}", self._save_worker, entry, self._host.remote_path(),
                                      target):
            self._host.show_status(f"{remote} is already downloading.", "info")

    def _save_worker(self, entry: RemoteFile, folder: str | None, target: Path) -> None:
        with self._host.transfers.track(f"⬇ {entry.name}", entry.size, done="saved") as row:
            target.parent.mkdir(parents=True, exist_ok=True)
            size = download_to_path(self._host.client, entry.name, folder, target, progress=row)
        self._host.show_status(f"Saved {entry.name} ({human_size(size)}) to {target}", "ok")

    # ---------------------------------------------------------------- delete with confirmation
    def _on_delete_button_click(self, _button: w.Button) -> None:
        if self._entry is None:
            return
        remote = join_remote(self._host.path, self._entry.name)
        self._confirm_text.value = f"Delete <code>{html.escape(MOUNT + '/' + remote)}</code>? This cannot be undone."
        self._confirm_box.layout.display = "flex"
        self._delete_button.disabled = True

    def _on_cancel_button_click(self, _button: w.Button) -> None:
        self._hide_confirm()
        self._host.show_status("Delete cancelled.", "info")

    def _on_confirm_button_click(self, _button: w.Button) -> None:
        entry = self._entry
        if entry is None or not self.confirming:
            return  # a second click on a button already hidden: the first one decided
        self._hide_confirm()
        remote = join_remote(self._host.path, entry.name)
        if not self._host.tasks.start(f"delete:{remote}", self._delete_worker, entry, self._host.remote_path(),
                                      remote):
            self._host.show_status(f"{remote} is already being deleted.", "info")

    def _delete_worker(self, entry: RemoteFile, folder: str | None, remote: str) -> None:
        self._host.client.delete_file(entry.name, path=folder)
        self._host.show_status(f"Deleted {MOUNT}/{remote}", "ok")
        if self._entry is not None and self._entry.name == entry.name:
            self._host.select(None)
        self._host.refresh(quiet=True)

    def _hide_confirm(self) -> None:
        self._confirm_box.layout.display = "none"
        self._delete_button.disabled = False

    def close(self) -> None:
        for child in (self._details, self._link_button, self._link, self._folder_text, self._save_button,
                      self._delete_button, self._confirm_text, self._confirm_button, self._cancel_button,
                      self._confirm_box, self._actions, *self._preview.children, self._preview):
            child.close()
        super().close()
