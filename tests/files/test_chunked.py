"""The chunked browser upload (ChunkedUpload) on the kernel's side, against a real local pool.

The page's ES module is played by ``FakeBrowser`` (conftest): the same messages, the same window of
unacknowledged chunks. The real page runs in ``test_browser.py``.
"""

from __future__ import annotations

import hashlib
import threading
import tracemalloc

import pytest

from aca_kernel.widgets import FileBrowser

from .conftest import V1, V2, FakeBrowser


def browser(browsers: list, client) -> FileBrowser:
    fb = FileBrowser(client=client)
    browsers.append(fb)
    assert fb.wait(60)
    return fb


@pytest.mark.parametrize("version", [V1, V2])
def test_a_file_far_above_the_websocket_limit_arrives_whole(make_client, browsers, version: str) -> None:
    """24 MB in 1 MB chunks (a plain Jupyter server refuses one message over 10 MiB)."""
    client = make_client(version)
    fb = browser(browsers, client)
    page = FakeBrowser(fb._uploads.picker)
    data = hashlib.sha256(b"seed").digest() * (24 * 1024 * 1024 // 32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        reply = page.upload("big.bin", data)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert reply["op"] == "done" and reply["size"] == len(data) and reply["path"] == "/mnt/data/big.bin"
    acks = page.of(reply["id"], "ack")
    assert [a["seq"] for a in acks] == list(range(24))  # every chunk acknowledged, in order
    assert [a["sent"] for a in acks] == sorted(a["sent"] for a in acks) and acks[-1]["sent"] == len(data)
    # The kernel holds at most the window of chunks (the test's own 24 MB were allocated before).
    assert peak < (fb._uploads.picker.window + 2) * fb._uploads.picker.chunk_bytes, peak
    assert fb.wait()
    assert client.get_file_properties("big.bin").size == len(data)
    assert hashlib.sha256(client.download_file("big.bin")).digest() == hashlib.sha256(data).digest()


def test_cancel_midway_leaves_nothing(make_client, browsers) -> None:
    client = make_client(V2)
    client.upload_file(b"old", "keep.bin")
    fb = browser(browsers, client)
    fb._uploads.picker.chunk_bytes = 64 * 1024
    page = FakeBrowser(fb._uploads.picker)
    reply = page.upload("partial.bin", b"x" * (40 * 64 * 1024), cancel_after=10)
    assert reply["op"] == "cancelled"
    assert fb.wait()
    assert sorted(f.name for f in client.list_files()) == ["keep.bin"]  # no partial file
    assert "cancelled" in fb.status
    # Cancelling a file with the name of an existing one leaves the existing one as it was.
    assert page.upload("keep.bin", b"y" * (40 * 64 * 1024), cancel_after=5)["op"] == "cancelled"
    assert fb.wait() and client.download_file("keep.bin") == b"old"
    assert page.upload("after.bin", b"fine")["op"] == "done"  # and the widget goes on working


def test_refusals_are_one_line_and_nothing_is_sent(make_client, browsers) -> None:
    client = make_client()
    fb = browser(browsers, client)
    page = FakeBrowser(fb._uploads.picker)
    _, reply = page.begin("huge.bin", 128 * 1024 * 1024 + 1)
    assert reply["op"] == "rejected" and "at most 128 MB" in reply["error"]
    _, reply = page.begin("../escape.txt", 3)
    assert reply["op"] == "rejected" and "leaves /mnt/data" in reply["error"]
    page.send({"op": "begin", "id": "x"})  # malformed: no name, no size
    assert page.wait_for("x", "rejected")["error"] == "malformed upload request"
    page.send({"nonsense": True})  # ignored, no crash
    assert client.list_files() == []
    assert page.upload("ok.txt", b"ok")["op"] == "done"


def test_a_chunk_out_of_order_fails_that_upload_only(make_client, browsers) -> None:
    client = make_client()
    fb = browser(browsers, client)
    page = FakeBrowser(fb._uploads.picker)
    upload_id, _ = page.begin("bad.bin", 10)
    page.send({"op": "chunk", "id": upload_id, "seq": 0, "offset": 4}, [memoryview(b"abc")])
    reply = page.wait_for(upload_id, "failed")
    assert "does not follow" in reply["error"]
    assert fb.wait() and [f.name for f in client.list_files()] == []
    assert page.upload("good.bin", b"0123456789")["op"] == "done"


def test_kernel_busy_follows_executions(make_client, browsers) -> None:
    """The page shows "busy — waiting for the running cell" from this flag, set around every execution."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    fb = browser(browsers, make_client())
    picker = fb._uploads.picker
    seen: list[bool] = []
    picker.observe(lambda change: seen.append(change["new"]), names="kernel_busy")
    shell.run_cell("1 + 1")
    assert seen == [True, False] and not picker.kernel_busy


def test_an_upload_waits_while_the_kernel_is_busy(make_client, browsers, monkeypatch) -> None:
    """No chunk for longer than the stall limit while a cell runs is not a stall: the upload goes on after."""
    from aca_kernel.notebook._widgets import _chunked

    monkeypatch.setattr(_chunked, "STALL_SECONDS", 0.5)
    client = make_client()
    fb = browser(browsers, client)
    picker = fb._uploads.picker
    picker.chunk_bytes = 4
    page = FakeBrowser(picker)
    resumed = threading.Event()

    def before_chunk(seq: int) -> None:
        if seq == 1:  # a cell runs for a while between two chunks
            picker.kernel_busy = True
            resumed.wait(2.0)
            picker.kernel_busy = False

    threading.Timer(1.5, resumed.set).start()
    assert page.upload("slow.txt", b"abcdefgh", before_chunk=before_chunk)["op"] == "done"
    assert fb.wait() and client.download_file("slow.txt") == b"abcdefgh"


def test_a_page_that_stops_sending_is_given_up(make_client, browsers, monkeypatch) -> None:
    from aca_kernel.notebook._widgets import _chunked

    monkeypatch.setattr(_chunked, "STALL_SECONDS", 0.5)
    client = make_client()
    fb = browser(browsers, client)
    page = FakeBrowser(fb._uploads.picker)
    upload_id, _ = page.begin("gone.txt", 100)  # and then nothing: the tab was closed
    reply = page.wait_for(upload_id, "failed", timeout=60)
    assert "sent nothing" in reply["error"]
    assert fb.wait() and client.list_files() == []
