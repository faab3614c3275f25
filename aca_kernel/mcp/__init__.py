"""``aca-sessions mcp``: a Model Context Protocol server (stdio) giving agents a sandboxed, stateful Python.

Backed by ``$ACA_POOL_MANAGEMENT_ENDPOINT`` or, with none, this user's local session pool. The tools
(execute_python, upload_file, download_file, list_files, delete_file, new_session) are in ``_tools`` (no MCP
SDK), the conversion of outputs to content in ``_content``, the SDK glue in ``_server``. Nothing here is
imported by the package root: the MCP SDK (``pip install 'aca-sessions[mcp]'``) loads only for this command.
See docs/agents.md.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, prog: str = "aca-sessions mcp") -> int:
    if importlib.util.find_spec("mcp") is None:
        print(f"{prog}: error: the MCP SDK is not installed: pip install 'aca-sessions[mcp]'", file=sys.stderr)
        return 3
    from ._server import main as server_main

    return server_main(argv, prog)
