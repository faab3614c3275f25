"""The agent tools behind ``aca-sessions mcp``, without the MCP SDK: each returns a :class:`ToolResult`.

Code runs through the notebook path's ``RemoteRunner`` (the kernel's rich capture: streams, values, displays,
figures) on an ``ACAContext`` without an IPython shell, so sessions, the local-pool fallback and session
rotation behave as in the kernel. Named sessions (the ``session`` argument) are separate remote sessions of
this server process. Every failure becomes a one-line tool error (the CLI's wording); known secrets are
scrubbed from it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._exceptions import ACASessionsError, InvalidArgumentError, error_message
from ._content import IMAGE_TYPES, Image, Text, ToolResult, cap, outcome_result

__all__ = ["AgentTools"]

logger = logging.getLogger("aca_kernel.mcp")

_SESSION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# download_file without local_path returns the content itself only up to these sizes.
MAX_INLINE_TEXT = 100_000
MAX_INLINE_IMAGE = 2_000_000
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def _image_type(data: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _size(n: int | None) -> str:
    return "unknown size" if n is None else f"{n:,} bytes"


class AgentTools:
    """One server's sessions and what the tools do with them."""

    def __init__(self, *, endpoint: str | None = None, api_version: str | None = None,
                 session_id: str | None = None, sanitize_input: bool = True, local_root: str | os.PathLike[str],
                 timeout: float | None = None, max_text: int = 20_000, keep_sessions: bool = False) -> None:
        from .._config import ENV_API_VERSION, SESSION_API_VERSIONS
        from ..notebook._context import ACAContext, ACASettings
        from ..notebook._runner import RemoteRunner

        settings = ACASettings()
        if endpoint:
            settings.endpoint = endpoint
        if api_version:
            settings.api_version = api_version
        elif not settings.endpoint and not os.environ.get(ENV_API_VERSION):
            # The local pool speaks every version: the newest lets new_session delete the old session.
            settings.api_version = SESSION_API_VERSIONS[-1]
        if session_id:
            settings.session_id = session_id
        if timeout:
            settings.timeout = timeout
        # Outputs beyond this are cut inside the session already (images included): a model's context is small.
        settings.max_output_bytes = 2_000_000
        self.context = ACAContext(shell=None, settings=settings)
        self.runner = RemoteRunner(self.context)
        self.sanitize_input = sanitize_input
        self.local_root = Path(local_root).expanduser().resolve()
        self.max_text = max_text
        # An identifier given by the user is a session someone else may use: never deleted at exit.
        self.keep_sessions = keep_sessions or bool(settings.session_id)

    # --- plumbing ----------------------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        found = [os.environ.get("ACA_TOKEN") or ""]
        pool = self.context.local_pool
        if pool is not None:
            found.append(pool.token)
        return [s for s in found if len(s) >= 4]

    def _failure(self, exc: BaseException) -> ToolResult:
        if not isinstance(exc, (ACASessionsError, OSError, ValueError, RuntimeError)):
            logger.exception("tool failed unexpectedly")
        text = error_message(exc)
        for secret in self._secrets():
            text = text.replace(secret, "<redacted>")
        return ToolResult.error(text)

    def call(self, tool: Callable[..., ToolResult], *args: Any, **kwargs: Any) -> ToolResult:
        """Run one tool; any failure is a tool error (one line), never an exception."""
        try:
            return tool(*args, **kwargs)
        except Exception as exc:
            return self._failure(exc)

    def _state(self, session: str | None) -> Any:
        if session is not None and not _SESSION_NAME.match(session):
            raise InvalidArgumentError(
                f"Invalid session name {session!r}: use 1-64 letters, digits, '.', '_' or '-' (or leave it out "
                f"for this server's default session).")
        return self.context.session(session)

    def _local_path(self, path: str) -> Path:
        """A local path for a transfer, refused outside the folder this server may use."""
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.local_root / candidate
        resolved = candidate.resolve()
        if resolved != self.local_root and self.local_root not in resolved.parents:
            raise InvalidArgumentError(
                f"local_path {path!r} is outside {self.local_root}, the only local folder this server reads and "
                f"writes; start it with --local-root to use another.")
        return resolved

    # --- tools ---------------------------------------------------------------------------------------------
    def execute_python(self, code: str, session: str | None = None, timeout: float | None = None) -> ToolResult:
        from .._validation import sanitize_code

        if self.sanitize_input:
            code = sanitize_code(code)
        if not code.strip():
            raise InvalidArgumentError("No code to run: `code` is empty.")
        self._state(session)  # validates the name before anything runs
        outcome = self.runner.run(code, session=session, timeout=timeout)
        return outcome_result(outcome, limit=self.max_text)

    def upload_file(self, remote_path: str, local_path: str | None = None, content_base64: str | None = None,
                    content_text: str | None = None, session: str | None = None) -> ToolResult:
        given = [x is not None for x in (local_path, content_base64, content_text)]
        if sum(given) != 1:
            raise InvalidArgumentError(
                "Give exactly one of local_path, content_base64 or content_text as what to upload.")
        source: Any
        if local_path is not None:
            source = self._local_path(local_path)
            if not source.is_file():
                raise InvalidArgumentError(f"local_path {local_path!r} is not a file.")
        elif content_base64 is not None:
            try:
                source = base64.b64decode("".join(content_base64.split()), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidArgumentError(f"content_base64 is not valid base64 ({exc}).") from exc
        else:
            source = str(content_text).encode("utf-8")
        from .._folders import upload_checked

        state = self._state(session)
        info = upload_checked(state.client, source, remote_path)
        state.touch()
        return ToolResult.text(f"Uploaded to /mnt/data/{info.path} ({_size(info.size)}).")

    def download_file(self, remote_path: str, local_path: str | None = None,
                      session: str | None = None) -> ToolResult:
        state = self._state(session)
        client = state.client
        if local_path is not None:
            target = self._local_path(local_path)
            if target.is_dir():
                target = target / remote_path.rstrip("/").rsplit("/", 1)[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            written = client.download_file(remote_path, target)
            state.touch()
            return ToolResult.text(f"Saved /mnt/data/{remote_path.removeprefix('/mnt/data/')} to {target} "
                                   f"({_size(int(written))}).")
        info = client.get_file_properties(remote_path)
        if info.type == "directory":
            raise InvalidArgumentError(f"/mnt/data/{info.path} is a directory; list_files shows what is in it.")
        if info.size is not None and info.size > MAX_INLINE_IMAGE:
            raise InvalidArgumentError(
                f"/mnt/data/{info.path} is {_size(info.size)}, too large to return here; pass local_path to save "
                f"it, or read a part of it with execute_python.")
        data = client.download_file(remote_path)
        state.touch()
        assert isinstance(data, bytes)
        mime = _image_type(data)
        if mime in IMAGE_TYPES:
            return ToolResult([Text(f"/mnt/data/{info.path} ({mime}, {_size(len(data))}):"),
                               Image(base64.b64encode(data).decode("ascii"), mime)])
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                f"/mnt/data/{info.path} is a binary file ({_size(len(data))}); pass local_path to save it.") from None
        if len(data) > MAX_INLINE_TEXT:
            raise InvalidArgumentError(
                f"/mnt/data/{info.path} is {_size(len(data))} of text, more than this tool returns "
                f"({MAX_INLINE_TEXT:,}); pass local_path to save it, or read a part with execute_python.")
        return ToolResult.text(cap(text, self.max_text) if text else f"/mnt/data/{info.path} is empty.")

    def list_files(self, path: str | None = None, recursive: bool = False, session: str | None = None) -> ToolResult:
        state = self._state(session)
        from .._folders import is_internal

        files = sorted((f for f in state.client.list_files(path=path, recursive=recursive) if not is_internal(f.path)),
                       key=lambda f: f.path)
        state.touch()
        where = "/mnt/data" + (f"/{path.strip('/').removeprefix('mnt/data').strip('/')}" if path else "")
        where = where.rstrip("/")
        if not files:
            return ToolResult.text(f"No files in {where}.")
        lines = [f"{len(files)} entr{'y' if len(files) == 1 else 'ies'} in {where} (path, size, last modified):"]
        for f in files:
            when = f.last_modified.strftime("%Y-%m-%d %H:%M:%S UTC") if f.last_modified else "-"
            size = "directory" if f.type == "directory" else _size(f.size)
            lines.append(f"{f.path}{'/' if f.type == 'directory' else ''}\t{size}\t{when}")
        return ToolResult.text(cap("\n".join(lines), self.max_text))

    def delete_file(self, remote_path: str, session: str | None = None) -> ToolResult:
        state = self._state(session)
        state.client.delete_file(remote_path)
        state.touch()
        return ToolResult.text(f"Deleted /mnt/data/{remote_path.removeprefix('/mnt/data/')}.")

    def new_session(self, session: str | None = None) -> ToolResult:
        from .._config import SESSION_API_VERSIONS

        state = self._state(session)
        old, used = state.client.session_id, state.first_call is not None
        can_delete = state.client.api_version in SESSION_API_VERSIONS
        new = self.context.new_session(session, delete_old=True)
        if not used:
            fate = "was never used"
        elif can_delete:
            fate = "was deleted with its variables and files"
        else:
            fate = (f"is left to expire after the pool's idle cooldown (api-version {state.client.api_version} "
                    f"cannot delete sessions)")
        label = f"Session {session!r}" if session else "The default session"
        return ToolResult.text(f"{label} is now a fresh, empty session ({new}); the previous one ({old}) {fate}.")

    def close(self) -> None:
        """End of the server: delete the sessions it made (where the API version can), unless told to keep them."""
        try:
            self.context.close(delete_sessions=not self.keep_sessions)
        except Exception as exc:  # closing must not fail the shutdown
            logger.warning("could not close the sessions cleanly: %s", error_message(exc))
