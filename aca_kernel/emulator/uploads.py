"""Streamed multipart uploads: the body is parsed as it arrives and written straight to disk.

Memory use does not grow with the file: python-multipart's streaming parser hands over slices of each chunk,
which go to a staging file. A file over 128 MB is dropped as soon as it crosses the limit; the rest of the body
is read and discarded so the client gets its 413 instead of a broken connection.
"""

from __future__ import annotations

import logging
import re

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from . import errors
from .backend import Session
from .files import MAX_UPLOAD_BYTES, FileEntry, Upload, normalize_name, storage_error
from .limits import MAX_UPLOAD_PARTS

__all__ = ["receive_files"]

logger = logging.getLogger("aca_kernel.emulator")

_BOUNDARY_LINE = re.compile(rb"^--([!-~ ]{1,200}?)\r?\n")


def _text(raw: bytes) -> str:
    # Header values reach us as latin-1 bytes; clients put UTF-8 file names there.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Receiver:
    """Callbacks for MultipartParser: one Upload per part named ``file``."""

    def __init__(self, session: Session, base: str, many: bool) -> None:
        self.session = session
        self.base = base
        self.many = many
        self.finished: list[Upload] = []
        self.error: errors.ServiceError | None = None
        self.too_large = False
        self._files_seen = 0
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._upload: Upload | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def _part_begin(self) -> None:
        self._headers = {}
        self._upload = None

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        if self.error is not None:
            return
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = _text(options.get(b"name", b""))
        filename = options.get(b"filename")
        if filename is None:
            return  # an ordinary form field (LangChain sends data={}): nothing to store
        if name != "file":
            self.error = errors.SessionRequestValidationFailed(
                f"The multipart part holding a file must be named 'file', not {name!r}.", target="file"
            )
            return
        self._files_seen += 1
        if self._files_seen > 1 and not self.many:
            self.error = errors.SessionRequestValidationFailed(
                "This api-version uploads one file per request; send the other files separately.", target="file"
            )
            return
        if self._files_seen > MAX_UPLOAD_PARTS:
            self.error = errors.SessionRequestValidationFailed(
                f"An upload can hold at most {MAX_UPLOAD_PARTS} files; send the others in another request.",
                target="file",
            )
            return
        try:
            rel = normalize_name(_text(filename), self.base or None)
            self._upload = self.session.files.open_upload(rel, MAX_UPLOAD_BYTES)
        except errors.ServiceError as exc:
            self.error = exc
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = storage_error(exc, "the upload") or errors.InternalError(
            f"The local session pool could not stage the upload: {exc.strerror or exc}.")
        if self._upload is not None:
            self._upload.discard()
            self._upload = None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._upload is not None:
            try:
                self._upload.write(data[start:end])
            except OSError as exc:
                self._failed(exc)

    def _part_end(self) -> None:
        upload, self._upload = self._upload, None
        if upload is None:
            return
        try:
            upload.close()
        except OSError as exc:  # the last buffered bytes are written here
            self._upload = upload
            self._failed(exc)
            return
        if upload.too_large:
            self.too_large = True
            logger.warning("upload of %s refused: over %d bytes", upload.rel, MAX_UPLOAD_BYTES)
            return
        self.finished.append(upload)

    def commit(self) -> list[FileEntry]:
        """All or nothing: files appear in /mnt/data only once the whole body was accepted."""
        entries: list[FileEntry] = []
        try:
            for upload in self.finished:
                entries.append(upload.commit(self.session.files))
        finally:
            self.abort()
        return entries

    def abort(self) -> None:
        if self._upload is not None:
            self._upload.discard()
            self._upload = None
        for upload in self.finished:
            upload.discard()


async def receive_files(request: Request, session: Session, base: str, *, many: bool) -> list[FileEntry]:
    """Store every part named ``file`` under ``base`` (relative to /mnt/data); return what was stored."""
    mime, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary") if mime == b"multipart/form-data" else None
    stream = request.stream()
    head = b""
    if not boundary:
        # Semantic Kernel (Python) sends its multipart body labelled application/json: the boundary is the
        # body's first line.
        async for chunk in stream:
            head += chunk
            if b"\n" in head or len(head) > 4096:
                break
        found = _BOUNDARY_LINE.match(head)
        if found is None:
            raise errors.SessionRequestValidationFailed(
                "An upload must be a multipart/form-data body with a part named 'file' that has a filename.",
                target="Content-Type",
            )
        boundary = found.group(1)
    receiver = _Receiver(session, base, many)
    # Busy: an upload longer than the cooldown must not see its session expire under it.
    session.busy += 1
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    malformed = False
    try:
        try:
            if head:
                parser.write(head)
        except FormParserError:
            malformed = True
        async for chunk in stream:
            if malformed:
                continue  # keep reading so the client gets to read our answer
            try:
                parser.write(chunk)
            except FormParserError:
                malformed = True
        if not malformed:
            try:
                parser.finalize()
            except FormParserError:
                malformed = True
        if receiver.too_large:
            raise errors.RequestTooLarge(
                f"The file is larger than the {MAX_UPLOAD_BYTES // (1024 * 1024)} MB upload limit; split it or "
                "compress it.", target="file",
            )
        if receiver.error is not None:
            raise receiver.error
        if malformed:
            raise errors.SessionRequestValidationFailed("The multipart body is malformed.", target="body")
        if not receiver.finished:
            raise errors.SessionRequestValidationFailed(
                "The upload holds no file: send a multipart part named 'file' with a filename.", target="file"
            )
        return receiver.commit()
    finally:
        receiver.abort()  # whatever was not committed (error, disconnect) leaves no trace
        session.busy -= 1
        session.touch()
