"""The local session pool: the Azure Container Apps dynamic sessions data plane, served on loopback.

``python -m aca_kernel.emulator`` and ``aca-sessions emulator`` both call :func:`main`. See docs/emulator.md.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the local session pool with command-line arguments ``argv``; returns the exit status."""
    from .cli import main as cli_main

    return cli_main(argv)
