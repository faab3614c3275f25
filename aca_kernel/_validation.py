"""Checks done before any request: session identifiers, remote file names, upload sizes (no I/O)."""

from __future__ import annotations

import json
import re
import textwrap

from ._exceptions import InvalidArgumentError

__all__ = [
    "IDENTIFIER_RULE",
    "MAX_UPLOAD_BYTES",
    "sanitize_code",
    "split_remote_name",
    "upload_too_large",
    "v1_delete_snippet",
    "validate_session_id",
    "validate_upload_size",
]

MAX_UPLOAD_BYTES = 128 * 1024 * 1024

# Sources disagree (aca-api.md §2.4): the docs allow 4-128 characters of letters, digits and |-&^%$#(){}[];<>;
# the 2024-10/2025-02 specs allow 1-256 of [A-Za-z0-9-_]; the 2025-10 spec a broad set, 4-128. We take the
# documented character set plus "_" (which two specs allow and every client's uuid4 avoids) at 1-128
# characters: that rejects everything outside every source's alphabet and anything over the 128 limit
# two sources state, while still allowing the short names the 2024-10 spec permits.
_IDENTIFIER = re.compile(r"[A-Za-z0-9\-_|&^%$#(){}\[\];<>]{1,128}")
IDENTIFIER_RULE = "1-128 characters: ASCII letters, digits and - _ | & ^ % $ # ( ) { } [ ] ; < >"

DATA_ROOT = "/mnt/data"


def validate_session_id(session_id: object) -> str:
    if not isinstance(session_id, str) or not _IDENTIFIER.fullmatch(session_id):
        raise InvalidArgumentError(
            f"Invalid session identifier {session_id!r}: it must be {IDENTIFIER_RULE} "
            f"(leave it out to get a fresh uuid4)."
        )
    return session_id


def _clean_relative(value: str, what: str, original: str) -> str:
    """Normalise a path under /mnt/data to 'a/b/c' form, refusing anything that could leave it."""
    if "\x00" in value:
        raise InvalidArgumentError(f"Invalid {what} {original!r}: it contains a NUL character.")
    if value == DATA_ROOT or value == DATA_ROOT + "/":
        return ""
    if value.startswith(DATA_ROOT + "/"):
        value = value[len(DATA_ROOT) + 1:]
    elif value.startswith("/"):
        raise InvalidArgumentError(
            f"Invalid {what} {original!r}: absolute paths must be under {DATA_ROOT}/; "
            f"use a path relative to {DATA_ROOT}."
        )
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgumentError(
            f"Invalid {what} {original!r}: '..' segments are not allowed; files live under {DATA_ROOT}."
        )
    return "/".join(parts)


def split_remote_name(remote_name: object, path: str | None = None) -> tuple[str, str]:
    """Return ``(directory, name)`` relative to /mnt/data for a remote name and an optional directory.

    A leading ``/mnt/data/`` is stripped; ``a/b.txt`` becomes ``("a", "b.txt")``; with ``path="x"`` it
    becomes ``("x/a", "b.txt")``.
    """
    if not isinstance(remote_name, str):
        raise InvalidArgumentError(f"Invalid file name {remote_name!r}: expected a string.")
    directory = normalize_directory(path)
    rel = _clean_relative(remote_name, "file name", remote_name)
    if not rel:
        raise InvalidArgumentError(f"Invalid file name {remote_name!r}: it names no file under {DATA_ROOT}.")
    head, _, name = rel.rpartition("/")
    if head:
        directory = f"{directory}/{head}" if directory else head
    return directory, name


def normalize_directory(path: str | None) -> str:
    """Normalise an optional directory under /mnt/data ('' means /mnt/data itself)."""
    if path is None:
        return ""
    if not isinstance(path, str):
        raise InvalidArgumentError(f"Invalid path {path!r}: expected a string.")
    return _clean_relative(path, "path", path)


def upload_too_large(size: int | None, what: str) -> InvalidArgumentError:
    amount = f"is {size / (1024 * 1024):.1f} MB" if size is not None else "grew past 128 MB and was stopped"
    return InvalidArgumentError(
        f"{what} {amount}; the service accepts at most 128 MB ({MAX_UPLOAD_BYTES} bytes) per upload. "
        f"Split or compress it first."
    )


def validate_upload_size(size: int | None, what: str) -> None:
    if size is not None and size > MAX_UPLOAD_BYTES:
        raise upload_too_large(size, what)


# 2024-02-02-preview has no delete endpoint, so delete_file runs this fixed snippet in the session. The name
# travels as a JSON literal (never spliced into code), and the function removes itself from the namespace.
_V1_DELETE = """\
def __aca_sessions_rm(rel):
    import os
    base = os.path.realpath("/mnt/data")
    target = os.path.realpath(os.path.join(base, rel))
    if not target.startswith(base + os.sep):
        return "refused"
    if not os.path.isfile(target):
        return "missing"
    os.remove(target)
    return "deleted"
globals().pop("__aca_sessions_rm")(__import__("json").loads({literal}))"""


def v1_delete_snippet(rel: str) -> str:
    return _V1_DELETE.format(literal=repr(json.dumps(rel)))


# A Markdown fence line: three or more backticks (or tildes) and an optional info string ("python", "py3", ...).
_OPENING_FENCE = re.compile(r"^(?:`{3,}|~{3,})[^`]*$")
_CLOSING_FENCE = re.compile(r"^(?:`{3,}|~{3,})$")
_PYTHON_TAG = re.compile(r"(?i)^(?:python3?|py|ipython)$")


def sanitize_code(code: str) -> str:
    """Model-written code as the interpreter wants it: no surrounding blank lines, no Markdown fence.

    What LangChain's tool and the C# library do (strip whitespace and backticks around the code and a leading
    ``python`` tag), minus their regex's slips: a name that merely starts with "python" (``pythonic = 1``) is
    kept, and indentation is removed as a block (dedent), so the second line of an indented snippet does not
    become an IndentationError.
    """
    lines = code.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and _OPENING_FENCE.match(lines[0].strip()):
        lines.pop(0)
        if lines and _CLOSING_FENCE.match(lines[-1].strip()):
            lines.pop()
    elif len(lines) > 1 and _PYTHON_TAG.match(lines[0].strip()):
        lines.pop(0)  # a fence's info string left on its own line ("python\nprint(1)")
    text = textwrap.dedent("\n".join(lines)).strip("\n").rstrip()
    if "\n" not in text and len(text) > 1 and text[0] == text[-1] == "`":
        text = text.strip("`").strip()  # inline code: `print(1)`
    return text
