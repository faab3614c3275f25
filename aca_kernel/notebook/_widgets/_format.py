"""Pure helpers for the file widgets and magics: sizes, times, sorting, remote/local paths, messages (no I/O)."""

from __future__ import annotations

import csv
import html
import io
import json
import mimetypes
import posixpath
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._config import public_endpoint
from ..._exceptions import error_message
from ..._folders import is_internal
from ..._progress import format_bytes as human_size

if TYPE_CHECKING:
    from ..._models import RemoteFile

__all__ = [
    "MOUNT",
    "SORT_KEYS",
    "csv_head_html",
    "describe_client",
    "error_message",
    "format_time",
    "human_size",
    "is_directory",
    "join_remote",
    "parent_path",
    "preview_kind",
    "public_endpoint",
    "redact_urls",
    "safe_local_path",
    "sort_files",
    "split_remote",
    "text_head",
    "type_label",
    "visible",
]

MOUNT = "/mnt/data"
SORT_KEYS = ("name", "size", "modified", "type")

_TEXT_TYPES = {"application/json", "application/xml", "application/x-yaml", "application/yaml",
               "application/javascript", "application/x-python", "application/x-sh", "application/toml",
               "application/x-ipynb+json", "application/sql", "application/csv"}
_TEXT_EXTS = {".txt", ".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".md", ".py", ".log", ".yaml", ".yml",
              ".toml", ".ini", ".cfg", ".xml", ".html", ".htm", ".js", ".ts", ".sh", ".sql", ".r", ".ipynb",
              ".rst", ".tex", ".css"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp",
                  "image/bmp": "bmp", "image/svg+xml": "svg+xml"}


def format_time(when: datetime | None) -> str:
    """A timestamp in the viewer's local time zone, to the minute; ``''`` when the service gave none."""
    if when is None:
        return ""
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def is_directory(f: RemoteFile) -> bool:
    return str(getattr(f, "type", "file")).lower() == "directory"


def type_label(f: RemoteFile) -> str:
    """What a person calls the entry: 'folder', else the content type (the service's, or guessed from the name)."""
    if is_directory(f):
        return "folder"
    ctype = (f.content_type or "").split(";")[0].strip()
    if not ctype or ctype == "application/octet-stream":
        ctype = mimetypes.guess_type(f.name)[0] or ctype or "file"
    return ctype


def visible(files: Iterable[RemoteFile], folder: str) -> list[RemoteFile]:
    """The entries a person should see: aca-sessions' own files in /mnt/data (``_folders.is_internal``) are not."""
    return [f for f in files if not is_internal(f.path)]


def sort_files(files: Iterable[RemoteFile], key: str = "name", ascending: bool = True) -> list[RemoteFile]:
    """Folders first (as file managers do), then by ``key``; ties break on the name."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, not {key!r}")

    def value(f: RemoteFile) -> Any:
        if key == "size":
            return f.size if f.size is not None else -1
        if key == "modified":
            return f.last_modified.timestamp() if f.last_modified is not None else float("-inf")
        if key == "type":
            return type_label(f).casefold()
        return f.name.casefold()

    items = sorted(files, key=lambda f: f.name.casefold())
    items.sort(key=value, reverse=not ascending)
    items.sort(key=lambda f: not is_directory(f))
    return items


def join_remote(folder: str, name: str) -> str:
    """``('a/b', 'c.txt') -> 'a/b/c.txt'``, relative to /mnt/data."""
    folder = folder.strip("/")
    return f"{folder}/{name}" if folder else name


def parent_path(folder: str) -> str:
    """``'a/b' -> 'a'``, ``'a' -> ''``; the root is its own parent."""
    return posixpath.dirname(folder.strip("/"))


def split_remote(remote: str) -> tuple[str, str]:
    """``'/mnt/data/a/b.txt' -> ('a', 'b.txt')``. Raises ValueError for names that leave /mnt/data or are empty."""
    text = remote.strip()
    if text.startswith(MOUNT + "/") or text == MOUNT:
        text = text[len(MOUNT):]
    text = text.strip("/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"{remote!r} does not name a file in {MOUNT}")
    if ".." in parts:
        raise ValueError(f"{remote!r} leaves {MOUNT}; use a name relative to it, without '..'")
    return "/".join(parts[:-1]), parts[-1]


def safe_local_path(folder: str | Path, name: str) -> Path:
    """The file ``name`` inside ``folder``; ValueError when the name would land anywhere else.

    Remote names come from the service, so they are treated as untrusted: no separators, no '..', no absolute
    paths, and the resolved result (symlinks followed) must still be inside the resolved folder.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"refusing to save {name!r}: the name would escape the folder {str(folder)!r}")
    base = Path(folder).expanduser().resolve()
    target = (base / name).resolve()
    if target.parent != base:
        raise ValueError(f"refusing to save {name!r}: the name would escape the folder {str(folder)!r}")
    return target


def preview_kind(f: RemoteFile) -> str:
    """'image', 'csv', 'json', 'text' or 'other' from the content type and the file name."""
    ctype = (f.content_type or "").split(";")[0].strip().lower()
    guessed = (mimetypes.guess_type(f.name)[0] or "").lower()
    ext = posixpath.splitext(f.name)[1].lower()
    for t in (ctype, guessed):
        if t in _IMAGE_FORMATS:
            return "image"
    if ext in (".csv", ".tsv") or "csv" in ctype:
        return "csv"
    if ext in (".json", ".ipynb") or ctype == "application/json":
        return "json"
    if ext in _TEXT_EXTS or any(t.startswith("text/") or t in _TEXT_TYPES for t in (ctype, guessed)):
        return "text"
    return "other"


def image_format(f: RemoteFile) -> str:
    ctype = (f.content_type or "").split(";")[0].strip().lower()
    guessed = (mimetypes.guess_type(f.name)[0] or "").lower()
    return _IMAGE_FORMATS.get(ctype) or _IMAGE_FORMATS.get(guessed) or "png"


def text_head(data: bytes, complete: bool) -> str | None:
    """Decode the first bytes of a file as text, or None when they look binary (NUL bytes)."""
    if b"\x00" in data[:8192]:
        return None
    text = data.decode("utf-8", errors="replace")
    if not complete and text.endswith("\ufffd"):
        # The cut may have split a multi-byte character; drop the partial one.
        text = text.rstrip("\ufffd")
    return text


def csv_head_html(text: str, complete: bool, max_rows: int = 20) -> str:
    """The first rows of CSV text as an HTML table (escaped)."""
    lines = text.splitlines()
    if not complete and lines:
        lines = lines[:-1]  # the last line may be cut off mid-row
    sample = "\n".join(lines[:200])
    try:
        dialect: Any = csv.Sniffer().sniff(sample[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows: list[Sequence[str]] = []
    for row in csv.reader(io.StringIO(sample), dialect):
        rows.append(row)
        if len(rows) > max_rows:
            break
    if not rows:
        return "<i>(empty)</i>"
    head, body = rows[0], rows[1 : max_rows + 1]
    th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table class='aca-csv'><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def pretty_json(text: str, complete: bool) -> str:
    """Indented JSON when the whole document arrived and parses; the raw head otherwise."""
    if complete:
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)[:65536]
        except ValueError:
            pass
    return text


_URL = re.compile(r"https?://[^\s,;]+")


def redact_urls(text: str) -> str:
    """Every URL in ``text`` without user-info or query string (descriptions come from elsewhere)."""
    return _URL.sub(lambda m: public_endpoint(m.group(0).rstrip(".")) + ("." if m.group(0).endswith(".") else ""),
                    text)


def describe_client(client: Any) -> str:
    """One line naming the session, endpoint and api version of a client (never its credential)."""
    sid = getattr(client, "session_id", "?")
    endpoint = public_endpoint(str(getattr(client, "endpoint", "")))
    version = getattr(client, "api_version", "?")
    return f"session {sid} · {endpoint} · api {version}"


