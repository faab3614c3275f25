"""FileBrowser's Python side against a real local pool: the table, sorting, folders, transfers, errors.

Front-end events are simulated the way Lab sends them: ``Button.click()``, and the chunked upload's messages (``FakeBrowser``).
Worker threads are awaited with ``FileBrowser.wait()``, never with sleeps.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from conftest import wait_until

from aca_kernel import SessionsClient
from aca_kernel.widgets import FileBrowser

from .conftest import V1, V2, FakeBrowser, FlattensFolders, GatedTransport


def table_names(fb: FileBrowser) -> list[str]:
    """The names in the table, in display order (the name cells are the buttons after the 4 headers)."""
    return [c.description for c in fb._table.children[4:] if hasattr(c, "on_click")]


def name_button(fb: FileBrowser, name: str):
    return next(c for c in fb._table.children[4:] if getattr(c, "description", None) == name)


def open_browser(browsers: list, client: SessionsClient, **kwargs: object) -> FileBrowser:
    fb = FileBrowser(client=client, **kwargs)
    browsers.append(fb)
    assert fb.wait(60)
    return fb


def upload_via_picker(fb: FileBrowser, *files: tuple[str, bytes]) -> list[dict]:
    """Files picked in the browser: the chunked upload's messages, as its ES module sends them."""
    page = FakeBrowser(fb._uploads.picker)
    return [page.upload(name, data) for name, data in files]


def upload_local(fb: FileBrowser, path: Path | str) -> None:
    fb._uploads._local_text.value = str(path)
    fb._uploads._local_button.click()


def test_table_lists_files_with_human_sizes_and_header(make_client, browsers, pool) -> None:
    client = make_client()
    client.upload_file(b"a,b\n1,2\n", "data.csv")
    client.upload_file(b"x" * 1536, "blob.bin")
    fb = open_browser(browsers, client)
    assert table_names(fb) == ["blob.bin", "data.csv"]
    cells = [getattr(c, "value", "") for c in fb._table.children]
    assert any("1.5 KB" in v for v in cells) and any("text/csv" in v for v in cells)
    assert client.session_id in fb._title.value and "127.0.0.1" in fb._title.value
    assert pool.token not in fb._title.value
    assert fb.status == "2 items in /mnt/data" and fb.status_kind == "info"


def test_sorting_by_header_clicks(make_client, browsers) -> None:
    client = make_client()
    for name, size in (("b.txt", 30), ("a.txt", 300), ("c.txt", 3)):
        client.upload_file(b"x" * size, name)
    fb = open_browser(browsers, client)
    assert table_names(fb) == ["a.txt", "b.txt", "c.txt"]
    fb._sort_buttons["name"].click()  # same column again: descending
    assert table_names(fb) == ["c.txt", "b.txt", "a.txt"] and "▼" in fb._sort_buttons["name"].description
    fb._sort_buttons["size"].click()
    assert table_names(fb) == ["c.txt", "b.txt", "a.txt"] and fb.sort_key == "size" and fb.ascending
    fb._sort_buttons["size"].click()
    assert table_names(fb) == ["a.txt", "b.txt", "c.txt"] and not fb.ascending
    fb.sort_by("modified", ascending=True)
    assert [f.name for f in fb.files] == table_names(fb)


def test_modified_and_type_columns(make_client, browsers) -> None:
    from aca_kernel.notebook._widgets._format import format_time

    client = make_client()
    client.upload_file(b"{}", "b.json")
    client.upload_file(b"a,b", "a.csv")
    client.upload_file(b"t", "c.txt")
    fb = open_browser(browsers, client)
    texts = [getattr(c, "value", "") for c in fb._table.children[4:]]
    for f in fb.files:  # each row: name button, size, modified, type
        row = texts[4 * table_names(fb).index(f.name):][:4]
        assert row[2] == f"<div class='aca-cell'>{format_time(f.last_modified)}</div>"
        assert format_time(f.last_modified).startswith("20")
        assert "title=" in row[3]  # a type cut short at a narrow width shows whole on hover
    fb._sort_buttons["type"].click()
    assert table_names(fb) == ["b.json", "a.csv", "c.txt"]  # application/json < text/csv < text/plain
    fb._sort_buttons["type"].click()
    assert table_names(fb) == ["c.txt", "a.csv", "b.json"] and "▼" in fb._sort_buttons["type"].description


def test_folders_navigate_into_and_up(make_client, browsers) -> None:
    client = make_client(V2)
    client.upload_file(b"top", "top.txt")
    client.upload_file(b"inner", "inner.txt", path="sub")
    client.upload_file(b"deep", "deep.txt", path="sub/deeper")
    fb = open_browser(browsers, client)
    assert fb.supports_folders and table_names(fb) == ["sub", "top.txt"]  # folders first
    assert fb._up_button.disabled
    name_button(fb, "sub").click()
    assert fb.wait()
    assert fb.path == "sub" and table_names(fb) == ["deeper", "inner.txt"]
    assert "/mnt/data/sub" in fb._location.value and not fb._up_button.disabled
    name_button(fb, "deeper").click()
    assert fb.wait() and table_names(fb) == ["deep.txt"]
    fb._up_button.click()
    assert fb.wait() and fb.path == "sub"
    fb._up_button.click()
    assert fb.wait() and fb.path == "" and table_names(fb) == ["sub", "top.txt"]


def test_upload_from_browser_with_progress_rows(make_client, browsers) -> None:
    client = make_client(V2)
    client.upload_file(b"x", "inner.txt", path="sub")
    fb = open_browser(browsers, client)
    fb.navigate("sub")
    assert fb.wait()
    fb._uploads.picker.chunk_bytes = 1000  # several chunks for y.txt
    replies = upload_via_picker(fb, ("x.csv", b"a,b"), ("y.txt", b"hello " * 1000))
    assert fb.wait()
    assert client.download_file("x.csv", path="sub") == b"a,b"
    assert client.download_file("sub/y.txt") == b"hello " * 1000
    assert [r["op"] for r in replies] == ["done", "done"]
    assert replies[1] == {"op": "done", "id": replies[1]["id"], "path": "/mnt/data/sub/y.txt", "size": 6000}
    assert fb._uploads.picker.destination == "/mnt/data/sub"  # the page shows where files go
    assert upload_via_picker(fb, ("x.csv", b"again"))[0]["op"] == "done"  # the same name again works
    assert fb.wait() and client.download_file("sub/x.csv") == b"again"
    assert table_names(fb) == ["inner.txt", "x.csv", "y.txt"]
    assert fb.status_kind == "ok" and "Uploaded" in fb.status


def test_upload_from_kernel_path(make_client, browsers, tmp_path: Path) -> None:
    client = make_client()
    local = tmp_path / "local.json"
    local.write_text('{"k": [1, 2]}')
    fb = open_browser(browsers, client)
    upload_local(fb, local)
    assert fb.wait()
    assert client.download_file("local.json") == b'{"k": [1, 2]}'
    assert "local.json" in table_names(fb)
    upload_local(fb, tmp_path / "missing.txt")
    assert fb.status_kind == "error" and "does not exist" in fb.status


def test_upload_over_128_mb_refused_before_sending(make_client, browsers, tmp_path: Path) -> None:
    client = make_client()
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:  # sparse: no disk space used
        fh.truncate(128 * 1024 * 1024 + 1)
    fb = open_browser(browsers, client)
    upload_local(fb, big)
    assert fb.wait()
    assert fb.status_kind == "error" and "128 MB" in fb.status
    assert client.list_files() == []


def test_preview_text_csv_json_image_and_other(make_client, browsers) -> None:
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(png, format="PNG")
    client = make_client()
    client.upload_file(b"line one\nline <two>\n", "notes.txt")
    client.upload_file(b"a,b\n1,2\n", "data.csv")
    client.upload_file(b'{"k":[1,2]}', "d.json")
    client.upload_file(png.getvalue(), "pic.png")
    client.upload_file(b"PK\x03\x04" + bytes(100), "arch.zip")
    fb = open_browser(browsers, client)

    seen: list[str | None] = []
    fb.register_callback(lambda b: seen.append(b.selected.name if b.selected else None))
    name_button(fb, "notes.txt").click()
    assert fb.wait() and fb.selected is not None and fb.selected.name == "notes.txt"
    assert "line &lt;two&gt;" in fb._selection.preview_widget.value
    assert name_button(fb, "notes.txt").button_style == "info"
    fb.select("data.csv")
    assert fb.wait() and "<th>a</th>" in fb._selection.preview_widget.value
    fb.select("d.json")
    assert fb.wait() and '"k": [\n    1' in fb._selection.preview_widget.value.replace("&quot;", '"')
    fb.select("pic.png")
    assert fb.wait()
    image = fb._selection.preview_widget
    assert image.format == "png" and bytes(image.value) == png.getvalue()
    fb.select("arch.zip")
    assert fb.wait()
    other = fb._selection.preview_widget.value
    assert "No preview" in other and "application/zip" in other and "104 B" in other
    assert seen == ["notes.txt", "data.csv", "d.json", "pic.png", "arch.zip"]


def test_preview_reads_only_the_head(make_client, browsers) -> None:
    client = make_client()
    client.upload_file(b"0123456789\n" * 100_000, "big.log")  # 1.1 MB
    fb = open_browser(browsers, client)
    fb.preview_bytes = 995
    fb.select("big.log")
    assert fb.wait()
    value = fb._selection.preview_widget.value
    assert "First 995 B of 1.0 MB" in value
    assert value.count("0123456789") == 90  # 995 bytes hold 90 lines of 11 bytes and a cut "01234"
    assert value.endswith("0123456789\n01234</pre></div>")


def test_download_link_for_small_files_and_size_message_for_big(make_client, browsers) -> None:
    client = make_client()
    client.upload_file(b"a,b\n1,2\n", "data.csv")
    client.upload_file(b"z" * 5000, "big.bin")
    fb = open_browser(browsers, client)
    fb.select("data.csv")
    fb._selection._link_button.click()
    assert fb.wait()
    link = fb._selection._link.value
    assert 'download="data.csv"' in link and base64.b64encode(b"a,b\n1,2\n").decode() in link
    fb.link_limit = 1000
    fb.select("big.bin")
    fb._selection._link_button.click()
    assert fb.wait()
    assert fb.status_kind == "error" and "limited to 1000 B" in fb.status and fb._selection._link.value == ""


def test_save_to_kernel_folder(make_client, browsers, tmp_path: Path) -> None:
    client = make_client(V2)
    payload = bytes(range(256)) * 1000
    client.upload_file(payload, "sub/data.bin")
    fb = open_browser(browsers, client, path="sub")
    fb.select("data.bin")
    fb._selection._folder_text.value = str(tmp_path / "out")
    fb._selection._save_button.click()
    assert fb.wait()
    assert (tmp_path / "out" / "data.bin").read_bytes() == payload
    assert fb.status_kind == "ok" and "Saved data.bin" in fb.status
    assert fb.transfers.rows[-1].bar.bar_style == "success"


def test_save_refuses_a_name_that_escapes_the_folder(make_client, browsers, tmp_path: Path) -> None:
    client = make_client()
    client.upload_file(b"secret", "data.csv")
    outside = tmp_path / "outside.csv"
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / "data.csv").symlink_to(outside)  # saving "data.csv" here would write outside the folder
    fb = open_browser(browsers, client)
    fb.select("data.csv")
    fb._selection._folder_text.value = str(folder)
    fb._selection._save_button.click()
    assert fb.wait()
    assert fb.status_kind == "error" and "escape" in fb.status
    assert not outside.exists()


@pytest.mark.parametrize("name", ["..\\evil.txt", "a\\b.txt"])
def test_save_refuses_a_service_name_with_a_separator(make_client, browsers, tmp_path: Path, name: str) -> None:
    """The service accepts backslashes in names; saved on Windows, ``..\\evil.txt`` would leave the folder."""
    client = make_client()
    client.upload_file(b"payload", name)
    folder = tmp_path / "dl"
    fb = open_browser(browsers, client)
    fb.select(name)
    assert fb.wait()
    fb._selection._folder_text.value = str(folder)
    fb._selection._save_button.click()
    assert fb.wait()
    assert fb.status_kind == "error" and "escape" in fb.status
    assert list(tmp_path.iterdir()) == []  # refused before anything was created or sent
    assert fb.busy == [] and fb.transfers.rows == []


def test_delete_with_cancel_then_confirm(make_client, browsers) -> None:
    client = make_client()
    client.upload_file(b"1", "keep.txt")
    client.upload_file(b"2", "gone.txt")
    fb = open_browser(browsers, client)
    fb.select("gone.txt")
    assert fb.wait()
    fb._selection._delete_button.click()
    assert fb._selection.confirming and "gone.txt" in fb._selection._confirm_text.value
    fb._selection._cancel_button.click()
    assert not fb._selection.confirming and fb.status == "Delete cancelled."
    assert {f.name for f in client.list_files()} == {"keep.txt", "gone.txt"}
    fb._selection._delete_button.click()
    fb._selection._confirm_button.click()
    assert fb.wait()
    assert [f.name for f in client.list_files()] == ["keep.txt"]
    assert table_names(fb) == ["keep.txt"] and fb.selected is None
    assert fb.status_kind == "ok" and fb.status == "Deleted /mnt/data/gone.txt"


def test_errors_show_in_status_and_widget_keeps_working(make_client, browsers, tmp_path: Path) -> None:
    client = make_client()
    client.upload_file(b"1", "a.txt")
    fb = open_browser(browsers, client)
    fb.select("a.txt")
    assert fb.wait()
    client.delete_file("a.txt")  # gone behind the widget's back: the next download is a 404
    fb._selection._folder_text.value = str(tmp_path)
    fb._selection._save_button.click()
    assert fb.wait()
    assert fb.status_kind == "error" and "\n" not in fb.status and "a.txt" in fb.status
    assert fb.transfers.rows[-1].bar.bar_style == "danger" and not (tmp_path / "a.txt").exists()
    client.upload_file(b"2", "b.txt")
    fb._refresh_button.click()
    assert fb.wait()
    assert table_names(fb) == ["b.txt"] and fb.status_kind == "info" and fb.selected is None


class SwitchableCredential:
    """A TokenCredential whose token can be revoked and replaced, as when a login expires and is renewed."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> SimpleNamespace:
        return SimpleNamespace(token=self.token, expires_on=time.time() + 3600)


def test_auth_error_is_one_line_and_the_widget_recovers(pool, browsers) -> None:
    credential = SwitchableCredential("revoked-secret-token")
    client = SessionsClient(pool.endpoint, credential, api_version=V1, max_retries=0)
    try:
        client.session_id = f"files-{uuid.uuid4().hex[:12]}"
        fb = open_browser(browsers, client)
        assert fb.status_kind == "error" and "\n" not in fb.status and "401" in fb.status
        assert "revoked-secret-token" not in fb.status and not fb._refresh_button.disabled
        [reply] = upload_via_picker(fb, ("x.csv", b"a,b"))
        assert fb.wait() and fb.status_kind == "error"
        assert reply["op"] == "failed" and "401" in reply["error"] and "revoked-secret-token" not in reply["error"]
        credential.token = pool.token  # renewed: the same widget works again
        upload_via_picker(fb, ("x.csv", b"a,b"))
        assert fb.wait() and fb.status_kind == "ok" and table_names(fb) == ["x.csv"]
    finally:
        client.close()


def test_network_error_is_one_line_with_the_address(browsers) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = SessionsClient(f"http://127.0.0.1:{port}/", "t", api_version=V1, max_retries=0)
    try:
        fb = open_browser(browsers, dead)
        assert fb.status_kind == "error" and "\n" not in fb.status and str(port) in fb.status
        fb._refresh_button.click()
        assert fb.wait() and fb.status_kind == "error"
    finally:
        dead.close()


class Outage(httpx.HTTPTransport):
    """Fault injection: the real transport to the pool, except that requests fail to connect while ``down``.

    (Stopping the pool would lose its sessions and token; a network outage keeps both.)
    """

    down = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("[Errno 101] Network is unreachable", request=request)
        return super().handle_request(request)


def test_network_outage_is_shown_and_the_widget_recovers(pool, browsers, tmp_path: Path) -> None:
    transport = Outage()
    client = SessionsClient(pool.endpoint, pool.token, api_version=V1, max_retries=0, transport=transport,
                            session_id=f"files-{uuid.uuid4().hex[:12]}")
    try:
        client.upload_file(b"a,b\n1,2\n", "data.csv")
        fb = open_browser(browsers, client)
        transport.down = True
        fb.select("data.csv")  # the preview fails
        assert fb.wait() and fb.status_kind == "error" and "unreachable" in fb.status and "\n" not in fb.status
        assert "Preview unavailable" in fb._selection.preview_widget.value
        fb._selection._folder_text.value = str(tmp_path)
        fb._selection._save_button.click()
        assert fb.wait() and fb.transfers.rows[-1].bar.bar_style == "danger"
        assert list(tmp_path.iterdir()) == []  # no partial file
        transport.down = False
        fb._refresh_button.click()
        assert fb.wait() and fb.status == "1 item in /mnt/data"
        fb._selection._save_button.click()
        assert fb.wait() and fb.status_kind == "ok" and (tmp_path / "data.csv").read_bytes() == b"a,b\n1,2\n"
    finally:
        client.close()


def test_an_unexpected_error_in_a_handler_shows_in_the_widget(make_client, browsers, tmp_path: Path) -> None:
    """A click whose handler raises (here: ``~user`` of a user that does not exist) must not go unseen."""
    client = make_client()
    client.upload_file(b"1", "a.txt")
    fb = open_browser(browsers, client)
    upload_local(fb, "~no-such-user-aca/data.csv")
    assert fb.status_kind == "error" and "RuntimeError" in fb.status
    fb.select("a.txt")
    fb._selection._folder_text.value = "~no-such-user-aca/out"
    fb._selection._save_button.click()
    assert fb.status_kind == "error" and "RuntimeError" in fb.status
    local = tmp_path / "b.txt"
    local.write_text("2")
    upload_local(fb, local)  # and the widget carries on
    assert fb.wait() and fb.status_kind == "ok" and table_names(fb) == ["a.txt", "b.txt"]


@pytest.mark.parametrize(("action", "message"), [("save", "already downloading"),
                                                 ("link", "already being prepared"),
                                                 ("delete", "already being deleted")])
def test_a_second_click_does_not_start_the_same_operation(pool, browsers, tmp_path: Path, action: str,
                                                         message: str) -> None:
    def held_request(request: httpx.Request) -> bool:
        if action == "delete":
            return request.method == "DELETE"
        return request.method == "GET" and request.url.path.endswith("/one.bin/content")

    gate = GatedTransport(held_request)
    client = SessionsClient(pool.endpoint, pool.token, api_version=V2, transport=gate,
                            session_id=f"files-{uuid.uuid4().hex[:12]}")
    selection = None
    try:
        client.upload_file(b"payload", "one.bin")
        fb = open_browser(browsers, client)
        selection = fb._selection
        selection._folder_text.value = str(tmp_path)
        fb.select("one.bin")  # no preview for .bin files, so no download yet
        assert fb.wait()

        def click() -> None:
            if action == "save":
                selection._save_button.click()
            elif action == "link":
                selection._link_button.click()
            else:
                selection._delete_button.click()
                selection._confirm_button.click()

        click()
        assert gate.wait_held(1)
        click()
        assert message in fb.status and len(fb.busy) == 1
        selection._confirm_button.click()  # a stray click on a confirm button that is not shown does nothing
        gate.release()
        assert fb.wait()
        assert len(gate.held) == 1 and fb.status_kind == "ok"
        if action == "save":
            assert (tmp_path / "one.bin").read_bytes() == b"payload"
        elif action == "link":
            assert base64.b64encode(b"payload").decode() in selection._link.value
        else:
            assert client.list_files() == [] and fb.selected is None
        assert len(fb.transfers.rows) == (0 if action == "delete" else 1)
    finally:
        gate.release()
        client.close()


def test_double_upload_of_the_same_name_runs_once(pool, browsers) -> None:
    gate = GatedTransport(lambda r: r.method == "POST" and r.url.path.endswith("/files/upload"))
    client = SessionsClient(pool.endpoint, pool.token, api_version=V1, transport=gate)
    try:
        fb = open_browser(browsers, client)
        page = FakeBrowser(fb._uploads.picker)
        first, reply = page.begin("x.csv", 3)
        assert reply["op"] == "accepted"
        page.send({"op": "chunk", "id": first, "seq": 0, "offset": 0}, [memoryview(b"a,b")])
        assert gate.wait_held(1)
        _second, reply = page.begin("x.csv", 3)  # picked again while the first still uploads
        assert reply["op"] == "rejected" and "already uploading" in reply["error"]
        gate.release()
        assert page.wait_for(first, "done")["op"] == "done" and fb.wait()
        assert len(gate.held) == 1 and [f.name for f in client.list_files()] == ["x.csv"]
    finally:
        gate.release()
        client.close()


def test_folders_on_v1_come_from_nested_names(make_client, browsers) -> None:
    """2024-02-02-preview has no ``path``: folders are the names' prefixes, listed from the full listing."""
    client = make_client(V1)
    client.upload_file(b"1", "sub/deeper/x.txt")
    fb = open_browser(browsers, client)
    assert fb.supports_folders and table_names(fb) == ["sub"]
    fb.navigate("sub/deeper")
    assert fb.wait() and table_names(fb) == ["x.txt"]
    assert upload_via_picker(fb, ("y.txt", b"2"))[0]["op"] == "done"
    assert fb.wait() and client.download_file("sub/deeper/y.txt") == b"2"


def test_callbacks_can_be_removed(make_client, browsers) -> None:
    client = make_client()
    client.upload_file(b"1", "a.txt")
    fb = open_browser(browsers, client)
    calls: list[object] = []

    def cb(b: FileBrowser) -> None:
        calls.append(b.selected)

    fb.on_change(cb)
    fb.select("a.txt")
    fb.on_change(cb, remove=True)
    fb.select(None)
    assert fb.wait() and len(calls) == 1


@pytest.mark.parametrize("bad", ["nope.txt"])
def test_selecting_a_missing_name_is_an_error(make_client, browsers, bad: str) -> None:
    fb = open_browser(browsers, make_client())
    fb.select(bad)
    assert fb.status_kind == "error" and bad in fb.status


def test_service_413_is_shown_and_the_next_upload_works(pool, browsers) -> None:
    """Fault injection: a 413 the local pool cannot produce (the client refuses >128 MB before sending)."""
    import httpx

    real = httpx.HTTPTransport()
    rejected: list[str] = []

    class Rejects413Once(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST" and "/files" in request.url.path and not rejected:
                rejected.append(request.url.path)
                request.read()
                return httpx.Response(413, json={"error": {"code": "RequestEntityTooLarge",
                                                           "message": "The request body is too large."}})
            return real.handle_request(request)

    client = SessionsClient(pool.endpoint, pool.token, api_version=V1, transport=Rejects413Once())
    try:
        fb = open_browser(browsers, client)
        [reply] = upload_via_picker(fb, ("x.csv", b"a,b"))
        assert fb.wait()
        assert fb.status_kind == "error" and "413" in fb.status and "\n" not in fb.status
        assert reply["op"] == "failed" and "413" in reply["error"]
        upload_via_picker(fb, ("x.csv", b"a,b"))
        assert fb.wait()
        assert fb.status_kind == "ok" and table_names(fb) == ["x.csv"]
    finally:
        client.close()
        real.close()


def test_an_upload_whose_folders_the_service_dropped_says_so(pool, browsers, tmp_path: Path) -> None:
    """Fault injection (FlattensFolders): every upload checks the name the service stored it under."""
    client = SessionsClient(pool.endpoint, pool.token, api_version=V1, transport=FlattensFolders())
    try:
        fb = open_browser(browsers, client)
        [reply] = upload_via_picker(fb, ("top.txt", b"fine"))  # nothing to drop: stored as sent
        assert fb.wait() and reply["op"] == "done" and fb.status_kind == "ok"
        [reply] = upload_via_picker(fb, ("sub/b.txt", b"x"))  # a file of a folder picked in the browser
        assert fb.wait()
        assert reply["op"] == "failed" and "stored 'sub/b.txt' as 'b.txt'" in reply["error"]
        assert fb.status_kind == "error" and "2024-10-02-preview or later" in fb.status and "\n" not in fb.status
        fb.navigate("sub")  # the same from the kernel's machine, into an open folder
        (tmp_path / "c.txt").write_text("y")
        upload_local(fb, tmp_path / "c.txt")
        assert fb.wait() and fb.status_kind == "error" and "stored 'sub/c.txt' as 'c.txt'" in fb.status
    finally:
        client.close()


def test_a_folder_path_on_v1_opens_that_folder(make_client, browsers) -> None:
    client = make_client(V1)
    client.upload_file(b"1", "a.txt")
    client.upload_file(b"2", "sub/b.txt")
    fb = open_browser(browsers, client, path="sub")
    assert fb.path == "sub" and table_names(fb) == ["b.txt"]


def test_the_token_is_in_no_widget_state_nor_message(pool, make_client, browsers, monkeypatch, tmp_path) -> None:
    """Everything the kernel sends the front end (comm opens and updates) and every widget's final state."""
    import comm
    from comm.base_comm import BaseComm
    from ipywidgets.widgets.widget import _instances, _remove_buffers

    sent: list[str] = []

    class RecordingComm(BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys) -> None:
            sent.append(msg_type + json.dumps(data, default=str) + "".join(
                bytes(b).decode("latin-1") for b in buffers or ()))

    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    bad = "bad-secret-" + uuid.uuid4().hex
    client = make_client(V2)
    client.upload_file(b"a,b\n1,2\n", "data.csv")
    client.upload_file(b'{"k": 1}', "sub/d.json")
    local = tmp_path / "local.txt"
    local.write_text("from the kernel")
    fb = open_browser(browsers, client)
    upload_via_picker(fb, ("x.txt", b"hello"))
    upload_local(fb, local)
    assert fb.wait()
    fb.select("data.csv")
    fb._selection._link_button.click()
    fb._selection._folder_text.value = str(tmp_path / "out")
    fb._selection._save_button.click()
    assert fb.wait()
    fb._selection._delete_button.click()
    fb._selection._confirm_button.click()
    assert fb.wait()
    fb.select("sub")
    assert fb.wait()
    fb.select("d.json")
    client.delete_file("sub/d.json")
    fb._selection._save_button.click()  # 404
    assert fb.wait() and fb.status_kind == "error"
    bad_client = SessionsClient(pool.endpoint, bad, api_version=V1, max_retries=0)
    try:
        failed = open_browser(browsers, bad_client)  # 401
        assert failed.status_kind == "error"
        upload_via_picker(failed, ("y.txt", b"y"))
        assert failed.wait()
    finally:
        bad_client.close()

    states = [json.dumps(_remove_buffers(w.get_state())[0], default=str) for w in list(_instances.values())]
    everything = "\n".join(sent + states)
    assert client.session_id in everything and "Download link" in everything  # what was recorded is the widget
    assert "base64," in everything and "401" in everything
    assert pool.token not in everything and bad not in everything


def test_a_refused_construction_leaves_no_error_behind(monkeypatch) -> None:
    """ipywidgets closes a widget from ``__del__``; a FileBrowser whose ``__init__`` raised must close quietly."""
    import gc
    import sys

    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    try:
        FileBrowser(client=object(), sort_by="colour")  # type: ignore[arg-type]
    except ValueError as exc:
        assert "sort_by" in str(exc)
    gc.collect()
    assert unraisable == []


def test_a_listing_or_preview_the_user_has_left_is_dropped(pool, browsers) -> None:
    """A slow answer for a folder (or file) the user already left must not replace what the widget shows now."""

    def slow(request: httpx.Request) -> bool:
        listing_sub = request.url.path.endswith("/files") and request.url.params.get("path") == "sub"
        return request.method == "GET" and (listing_sub or request.url.path.endswith("/slow.txt/content"))

    gate = GatedTransport(slow)
    client = SessionsClient(pool.endpoint, pool.token, api_version=V2, transport=gate,
                            session_id=f"files-{uuid.uuid4().hex[:12]}")
    try:
        client.upload_file(b"in sub", "inner.txt", path="sub")
        client.upload_file(b"slow text", "slow.txt")
        client.upload_file(b"fast text", "fast.txt")
        fb = open_browser(browsers, client)
        fb.select("sub")  # the listing of sub is held ...
        assert gate.wait_held(1) and fb.path == "sub"
        fb.up()  # ... while the user goes back up
        assert wait_until(lambda: len(fb.files) == 3)  # the root's listing is not held
        fb.select("slow.txt")  # the preview of slow.txt is held ...
        assert gate.wait_held(2)
        fb.select("fast.txt")  # ... while the user picks another file, whose preview comes first
        assert wait_until(lambda: "fast text" in getattr(fb._selection.preview_widget, "value", ""))
        gate.release()
        assert fb.wait()
        assert fb.path == "" and table_names(fb) == ["sub", "fast.txt", "slow.txt"]
        assert fb.selected.name == "fast.txt" and "fast text" in fb._selection.preview_widget.value
    finally:
        gate.release()
        client.close()


def test_a_file_gone_from_the_session_leaves_the_table(make_client, browsers) -> None:
    """Deleted behind the widget's back (by code in the session): the 404 of its preview drops its row."""
    client = make_client()
    client.upload_file(b"a,b\n", "gone.csv")
    client.upload_file(b"x", "kept.txt")
    fb = open_browser(browsers, client)
    client.delete_file("gone.csv")
    fb.select("gone.csv")
    assert fb.wait() and fb.wait()  # the failed preview, then the listing it triggers
    assert fb.status_kind == "error" and "gone.csv" in fb.status
    assert table_names(fb) == ["kept.txt"] and fb.selected is None
