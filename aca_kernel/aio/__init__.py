"""The async client: ``from aca_kernel.aio import SessionsClient`` (same names as the sync package)."""

from __future__ import annotations

from ._client import Execution, SessionsClient

__all__ = ["Execution", "SessionsClient"]

SessionsClient.__module__ = "aca_kernel.aio"
Execution.__module__ = "aca_kernel.aio"
