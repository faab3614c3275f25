"""The notebook path: everything between a cell and the client.

The kernel (``aca_kernel.kernel``) and the ``%%aca`` magic in a stock IPython kernel both run remote cells through
this package: ``_context`` (settings and sessions of one shell), ``_runner`` (a cell to an outcome),
``_runtime`` and ``_session_runtime`` (the runtime installed in the session: cells, completion, inspection),
``_display`` (outcomes as Jupyter messages), ``_comms`` (widgets made in the session, mirrored here),
``_tracebacks``, ``magics`` and ``_filemagics`` (the line and cell magics), ``_widgets`` (the file browser).
It imports the client from the package root; the root never imports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext aca_sessions``: register ``%%aca``, the session magics and the file magics."""
    from .magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ip)
