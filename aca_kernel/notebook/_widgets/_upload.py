"""The upload row of the file browser: files picked in the browser, or a path on the kernel's machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..._validation import MAX_UPLOAD_BYTES
from ._format import MOUNT, human_size, join_remote

if TYPE_CHECKING:
    from ._browser import FileBrowser

__all__ = ["UploadPanel"]


class UploadPanel(w.HBox):
    """A ``FileUpload(multiple=True)`` plus a kernel-side path box; each file gets its own progress row."""

    def __init__(self, host: FileBrowser) -> None:
        self._host = host
        self._picker = w.FileUpload(multiple=True, description="Upload", icon="upload",
                                    tooltip=f"Send files from this browser to {MOUNT} (128 MB each at most)")
        self._local_text = w.Text(placeholder="path on the kernel's machine", description="or from kernel:",
                                  style={"description_width": "initial"}, layout=w.Layout(width="26em"))
        self._local_button = w.Button(description="Upload file", icon="upload",
                                      tooltip=f"Send a file from the kernel's machine to {MOUNT}")
        self._picker_handler = host.tasks.guard(self._on_picker_value)
        self._picker.observe(self._picker_handler, names="value")
        self._local_button.on_click(host.tasks.guard(self._on_local_button_click))
        super().__init__([self._picker, self._local_text, self._local_button],
                         layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.add_class("aca-upload")  # set apart from the selected file's actions above it

    # ---------------------------------------------------------------- from the browser
    def _on_picker_value(self, change: dict[str, Any]) -> None:
        items = change["new"]
        if not items:
            return
        folder = self._host.remote_path()
        try:
            for item in items:
                name = str(item["name"])
                content = item["content"]
                # Copy now: the widget's buffer is released when its value is cleared below.
                data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
                self._start(name, folder, data, len(data))
        finally:
            # Clear the picker without re-entering this handler, so picking the same file again uploads again.
            self._picker.unobserve(self._picker_handler, names="value")
            try:
                self._picker.value = ()
            finally:
                self._picker.observe(self._picker_handler, names="value")

    # ---------------------------------------------------------------- from the kernel's machine
    def _on_local_button_click(self, _button: w.Button) -> None:
        raw = self._local_text.value.strip()
        if not raw:
            self._host.show_status("Type the path of a file on the kernel's machine first.", "error")
            return
        local = Path(raw).expanduser()
        if not local.is_file():
            what = "is a folder, not a file" if local.is_dir() else "does not exist"
            self._host.show_status(f"{local} {what} on the kernel's machine.", "error")
            return
        self._start(local.name, self._host.remote_path(), local, local.stat().st_size)

    # ---------------------------------------------------------------- shared
    def _start(self, name: str, folder: str | None, source: bytes | Path, size: int) -> None:
        remote = join_remote(folder or "", name)
        if size > MAX_UPLOAD_BYTES:
            self._host.show_status(f"{name} is {human_size(size)}; the service accepts at most 128 MB per file.",
                                   "error")
            return
        if not self._host.tasks.start(f"upload:{remote}", self._worker, name, folder, source, size, remote):
            self._host.show_status(f"{remote} is already uploading; wait for it to finish.", "info")

    def _worker(self, name: str, folder: str | None, source: bytes | Path, size: int, remote: str) -> None:
        with self._host.transfers.track(f"⬆ {name}", size, done="uploaded") as row:
            if isinstance(source, Path):
                with source.open("rb") as fh:  # streamed by the client in chunks, never read whole
                    self._host.client.upload_file(fh, name, path=folder, progress=row)
            else:
                self._host.client.upload_file(source, name, path=folder, progress=row)
        self._host.show_status(f"Uploaded {name} ({human_size(size)}) to {MOUNT}/{remote}", "ok")
        self._host.refresh(quiet=True)

    def close(self) -> None:
        for child in (self._picker, self._local_text, self._local_button):
            child.close()
        super().close()
