"""The pure helpers behind the file widget and magics."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aca_kernel._models import RemoteFile
from aca_kernel.notebook._widgets._format import (
    csv_head_html,
    describe_client,
    error_message,
    human_size,
    parent_path,
    preview_kind,
    public_endpoint,
    safe_local_path,
    sort_files,
    split_remote,
    text_head,
)


def rf(name: str, size: int | None = 1, ts: int = 0, kind: str = "file", ctype: str | None = None) -> RemoteFile:
    return RemoteFile(name=name, size=size, last_modified=datetime.fromtimestamp(ts, timezone.utc), type=kind,
                      content_type=ctype, directory="", raw={})


def test_human_size() -> None:
    assert [human_size(n) for n in (None, 0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == \
        ["", "0 B", "1023 B", "1.5 KB", "5.0 MB", "3.0 GB"]
    assert human_size(1024**2 - 1) == "1.0 MB" and human_size(1024**3 - 10) == "1.0 GB"  # never "1024.0 KB"


def test_sort_keeps_folders_first_and_flips_direction() -> None:
    files = [rf("b.txt", 30, 3), rf("A.txt", 10, 2), rf("dir", None, 1, "directory"), rf("c.txt", 20, 1)]
    assert [f.name for f in sort_files(files)] == ["dir", "A.txt", "b.txt", "c.txt"]
    assert [f.name for f in sort_files(files, "name", False)] == ["dir", "c.txt", "b.txt", "A.txt"]
    assert [f.name for f in sort_files(files, "size")] == ["dir", "A.txt", "c.txt", "b.txt"]
    assert [f.name for f in sort_files(files, "modified", False)] == ["dir", "b.txt", "A.txt", "c.txt"]
    with pytest.raises(ValueError, match="sort key"):
        sort_files(files, "colour")


def test_remote_paths() -> None:
    assert split_remote("/mnt/data/a/b.txt") == ("a", "b.txt")
    assert split_remote("x.csv") == ("", "x.csv")
    assert parent_path("a/b") == "a" and parent_path("a") == ""
    for bad in ("../etc/passwd", "/mnt/data/", "a/../../b", ""):
        with pytest.raises(ValueError):
            split_remote(bad)


def test_safe_local_path_refuses_escapes(tmp_path: Path) -> None:
    assert safe_local_path(tmp_path, "ok.txt") == (tmp_path / "ok.txt").resolve()
    for bad in ("..", "../x", "/etc/passwd", "a/b", "a\\b", ""):
        with pytest.raises(ValueError, match="escape"):
            safe_local_path(tmp_path, bad)
    # A symlink with the file's name would send the bytes outside the folder.
    outside = tmp_path.parent / f"outside-{os.getpid()}.txt"
    (tmp_path / "link.txt").symlink_to(outside)
    with pytest.raises(ValueError, match="escape"):
        safe_local_path(tmp_path, "link.txt")


def test_preview_kinds() -> None:
    assert preview_kind(rf("p.png")) == "image"
    assert preview_kind(rf("x", ctype="image/jpeg")) == "image"
    assert preview_kind(rf("d.csv")) == "csv"
    assert preview_kind(rf("d.json")) == "json"
    assert preview_kind(rf("notes.md")) == "text"
    assert preview_kind(rf("x", ctype="text/plain; charset=utf-8")) == "text"
    assert preview_kind(rf("a.zip")) == "other"


def test_text_head_and_csv_table() -> None:
    assert text_head(b"\x00\x01binary", True) is None
    assert text_head("héllo".encode()[:2], False) == "h"  # a cut multi-byte character is dropped
    table = csv_head_html("a,b\n1,<x>\n2,3\n4,", complete=False)
    assert "<th>a</th>" in table and "&lt;x&gt;" in table and "<td>4</td>" not in table


def test_no_secrets_in_descriptions() -> None:
    assert public_endpoint("https://user:pw@host.example/pool/?sig=abc") == "https://host.example/pool/"

    class Fake:
        session_id, endpoint, api_version = "s1", "http://u:secret@127.0.0.1:9/?code=zz", "2024-02-02-preview"

    text = describe_client(Fake())
    assert "s1" in text and "127.0.0.1:9" in text and "secret" not in text and "zz" not in text
    assert error_message(RuntimeError("header Bearer abc.def was refused")) == \
        "RuntimeError: header Bearer *** was refused"


def test_redact_urls_in_descriptions() -> None:
    from aca_kernel.notebook._widgets._format import redact_urls

    text = "default session: identifier s1 on https://u:pw@h.example/p/?code=SECRET, api-version v"
    assert redact_urls(text) == "default session: identifier s1 on https://h.example/p/, api-version v"
