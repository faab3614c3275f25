"""The upload row of the file browser: files or a folder picked in the browser, or a path on the kernel's machine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as w

from ..._folders import upload_checked, upload_tree, walk_local
from ..._validation import MAX_UPLOAD_BYTES
from ._chunked import ChunkedUpload, Incoming, UploadCancelled
from ._format import MOUNT, error_message, human_size, join_remote, split_remote

if TYPE_CHECKING:
    from ._browser import FileBrowser

__all__ = ["UploadPanel"]


class UploadPanel(w.VBox):
    """Browser uploads in chunks (:class:`ChunkedUpload`, any size up to 128 MB, folders too) and a kernel-side
    path box (a file or a folder here)."""

    def __init__(self, host: FileBrowser) -> None:
        self._host = host
        self._active = 0
        self._lock = threading.Lock()
        self._picker = ChunkedUpload(self._on_begin, destination=self._destination())
        self._local_text = w.Text(placeholder="path on the kernel's machine", description="or from kernel:",
                                  style={"description_width": "initial"}, layout=w.Layout(width="26em"))
        self._local_button = w.Button(description="Upload", icon="upload",
                                      tooltip=f"Send a file or a folder from the kernel's machine to {MOUNT}")
        self._local_button.on_click(host.tasks.guard(self._on_local_button_click))
        self._local_row = w.HBox([self._local_text, self._local_button],
                                 layout=w.Layout(flex_flow="row wrap", align_items="center"))
        super().__init__([self._picker, self._local_row])
        self.add_class("aca-upload")  # set apart from the selected file's actions above it

    def _destination(self) -> str:
        return MOUNT + ("/" + self._host.path if self._host.path else "")

    def folder_changed(self) -> None:
        self._picker.destination = self._destination()

    @property
    def picker(self) -> ChunkedUpload:
        return self._picker

    # ---------------------------------------------------------------- from the browser, in chunks
    def _on_begin(self, incoming: Incoming) -> str | None:
        """Shell thread: check the name and start a worker that streams the chunks to the service."""
        try:
            folder, name = split_remote(join_remote(self._host.path, incoming.name))
        except ValueError as exc:
            return str(exc)
        remote = join_remote(folder, name)
        if not self._host.tasks.start(f"upload:{remote}", self._browser_worker, incoming, folder, name, remote):
            return f"{remote} is already uploading; wait for it to finish"
        return None

    def _browser_worker(self, incoming: Incoming, folder: str, name: str, remote: str) -> None:
        self._begin()
        try:
            upload_checked(self._host.client, incoming.stream, name, path=folder or None)
        except UploadCancelled:
            self._picker.finish_cancelled(incoming)
            self._host.show_status(f"Upload of {remote} cancelled; nothing was stored.", "info")
            return
        except Exception as exc:
            self._picker.fail(incoming, error_message(exc))
            raise  # the status line shows it too
        finally:
            self._end()
        if incoming.cancelled.is_set():  # the cancel came after the last byte: take the file away again
            self._host.client.delete_file(name, path=folder or None)
            self._picker.finish_cancelled(incoming)
            self._host.show_status(f"Upload of {remote} cancelled; the file was removed again.", "info")
            return
        self._picker.finish(incoming, path=f"{MOUNT}/{remote}", size=incoming.size)
        self._host.show_status(f"Uploaded {remote} ({human_size(incoming.size)}) to {MOUNT}/{remote}", "ok")

    def _begin(self) -> None:
        with self._lock:
            self._active += 1

    def _end(self) -> None:
        # One listing when the last of several uploads ends, not one per file.
        with self._lock:
            self._active -= 1
            last = self._active == 0
        if last:
            self._host.refresh(quiet=True)

    # ---------------------------------------------------------------- from the kernel's machine
    def _on_local_button_click(self, _button: w.Button) -> None:
        raw = self._local_text.value.strip()
        if not raw:
            self._host.show_status("Type the path of a file or folder on the kernel's machine first.", "error")
            return
        local = Path(raw).expanduser()
        if local.is_dir():
            target = join_remote(self._host.path, local.resolve().name)
            if not self._host.tasks.start(f"upload:{target}/", self._folder_worker, local, target):
                self._host.show_status(f"{target} is already uploading; wait for it to finish.", "info")
            return
        if not local.is_file():
            self._host.show_status(f"{local} does not exist on the kernel's machine.", "error")
            return
        size = local.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            self._host.show_status(f"{local.name} is {human_size(size)}; the service accepts at most 128 MB per "
                                   "file.", "error")
            return
        remote = join_remote(self._host.path, local.name)
        if not self._host.tasks.start(f"upload:{remote}", self._path_worker, local, size, remote):
            self._host.show_status(f"{remote} is already uploading; wait for it to finish.", "info")

    def _path_worker(self, local: Path, size: int, remote: str) -> None:
        self._begin()
        try:
            with self._host.transfers.track(f"⬆ {local.name}", size, done="uploaded") as row, local.open("rb") as fh:
                upload_checked(self._host.client, fh, local.name, path=self._host.remote_path(), progress=row)
        finally:
            self._end()
        self._host.show_status(f"Uploaded {local.name} ({human_size(size)}) to {MOUNT}/{remote}", "ok")

    def _folder_worker(self, local: Path, target: str) -> None:
        files = walk_local(local)
        big = next((f for f in files if f.size > MAX_UPLOAD_BYTES), None)
        if big is not None:
            raise ValueError(f"{big.rel} is {human_size(big.size)}; the service accepts at most 128 MB per file")
        self._begin()
        try:
            row = self._host.transfers.add(f"⬆ {local.name}/ ({len(files)} files)", sum(f.size for f in files))
            result = upload_tree(self._host.client, files, target, progress=row)
        finally:
            self._end()
        if result.failed:
            rel, exc = result.failed[0]
            row.fail(f"{len(result.failed)} failed")
            self._host.show_status(f"{len(result.failed)} of {len(files)} files failed; {rel}: {error_message(exc)}",
                                   "error")
            return
        row.succeed("uploaded")
        self._host.show_status(f"Uploaded {result.files} files ({human_size(result.bytes)}) to {MOUNT}/{target}",
                               "ok")

    def close(self) -> None:
        for child in (self._picker, self._local_text, self._local_button, self._local_row):
            child.close()
        super().close()
