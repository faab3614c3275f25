"""The async client: ``from aca_kernel.aio import SessionsClient`` (same names as the sync package)."""

from __future__ import annotations

from ._client import SessionsClient

__all__ = ["SessionsClient"]

SessionsClient.__module__ = "aca_kernel.aio"
