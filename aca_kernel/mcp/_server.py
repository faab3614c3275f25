"""The MCP glue: tool schemas and descriptions for a model, the stdio server, the command line.

Tools are declared on the official SDK's ``MCPServer``; their JSON schemas come from the annotated parameters.
Each tool runs its blocking work in a worker thread (the event loop keeps serving the protocol) and returns a
``CallToolResult`` built here, so errors reach the model as tool errors (``isError``) in our own wording.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import anyio
import mcp.types as types
from mcp.server.mcpserver import MCPServer
from pydantic import Field

from ._content import Image, ToolResult
from ._tools import AgentTools

__all__ = ["build_parser", "build_server", "main"]

logger = logging.getLogger("aca_kernel.mcp")

INSTRUCTIONS = """\
A sandboxed, stateful Python interpreter (IPython) running in an Azure Container Apps dynamic session, or in a \
local sandbox on this machine. Variables, imports and files persist between execute_python calls in the same \
session, like cells of a notebook; the last expression's value is returned, and matplotlib figures come back \
as images. Files live in /mnt/data: upload_file puts files there, download_file fetches them, list_files and \
delete_file manage them. The sandbox has no network access by default, so `pip install` may fail; numpy, \
pandas and matplotlib are usually installed. Sessions end after an idle period (the pool's cooldown) and \
take their state with them; new_session starts over on purpose. Pass `session` (any short name) to keep \
separate sandboxes side by side."""

SessionArg = Annotated[str | None, Field(
    description="Optional name of a separate sandbox of this server (e.g. 'analysis'); each name has its own "
                "variables and files. Leave it out to use the default session.")]
RemotePath = Annotated[str, Field(
    description="A path in the sandbox, relative to /mnt/data (e.g. 'data.csv' or 'out/chart.png'); a leading "
                "/mnt/data/ is accepted.")]


def _result(result: ToolResult) -> types.CallToolResult:
    content: list[Any] = [types.ImageContent(type="image", data=b.data, mime_type=b.mime_type)
                          if isinstance(b, Image) else types.TextContent(type="text", text=b.text)
                          for b in result.blocks]
    return types.CallToolResult(content=content, is_error=result.is_error)


def build_server(tools: AgentTools) -> MCPServer:
    """The MCP server exposing ``tools``: execute_python, upload_file, download_file, list_files, delete_file,
    new_session."""
    from .. import __version__

    server: MCPServer = MCPServer("aca-sessions", title="ACA Sessions Python sandbox", instructions=INSTRUCTIONS,
                                  version=__version__, log_level="WARNING")

    async def run(method: Any, *args: Any, **kwargs: Any) -> types.CallToolResult:
        # abandon_on_cancel: a cancelled call stops waiting; code already sent is never re-sent.
        return _result(await anyio.to_thread.run_sync(lambda: tools.call(method, *args, **kwargs),
                                                      abandon_on_cancel=True))

    @server.tool(
        name="execute_python",
        description=(
            "Run Python code in the sandbox and return what it printed (stdout, stderr), the value of the last "
            "expression, any displayed output, and each matplotlib figure or displayed image as an image. State "
            "persists between calls. A failing cell returns an error result with the traceback; nothing is ever "
            "re-run automatically. Markdown code fences around the code are removed."),
        annotations=types.ToolAnnotations(title="Run Python", read_only_hint=False, destructive_hint=False,
                                          idempotent_hint=False, open_world_hint=False),
    )
    async def execute_python(
        code: Annotated[str, Field(description="Python source to run, as in a notebook cell.")],
        session: SessionArg = None,
        timeout: Annotated[float | None, Field(
            description="Seconds the code may run (the service stops it at 220 s at most).", gt=0)] = None,
    ) -> types.CallToolResult:
        return await run(tools.execute_python, code, session, timeout)

    @server.tool(
        name="upload_file",
        description=(
            "Put a file into the sandbox's /mnt/data, where code can open it. Give exactly one source: "
            "local_path (a file on the user's machine, inside the folder this server may use), content_text "
            "(text, written as UTF-8) or content_base64 (binary data). Files up to 128 MB."),
        annotations=types.ToolAnnotations(title="Upload a file", read_only_hint=False, destructive_hint=False,
                                          idempotent_hint=True, open_world_hint=False),
    )
    async def upload_file(
        remote_path: RemotePath,
        local_path: Annotated[str | None, Field(description="A local file to upload.")] = None,
        content_text: Annotated[str | None, Field(description="Text content to write.")] = None,
        content_base64: Annotated[str | None, Field(description="Binary content, base64-encoded.")] = None,
        session: SessionArg = None,
    ) -> types.CallToolResult:
        return await run(tools.upload_file, remote_path, local_path=local_path, content_base64=content_base64,
                         content_text=content_text, session=session)

    @server.tool(
        name="download_file",
        description=(
            "Fetch a file from the sandbox's /mnt/data. With local_path it is saved there on the user's machine "
            "(inside the folder this server may use); without, the content is returned: text for small text "
            "files, image content for small images."),
        annotations=types.ToolAnnotations(title="Download a file", read_only_hint=False, destructive_hint=False,
                                          idempotent_hint=True, open_world_hint=False),
    )
    async def download_file(
        remote_path: RemotePath,
        local_path: Annotated[str | None, Field(
            description="Where to save the file locally (a file or an existing folder).")] = None,
        session: SessionArg = None,
    ) -> types.CallToolResult:
        return await run(tools.download_file, remote_path, local_path=local_path, session=session)

    @server.tool(
        name="list_files",
        description="List the files and folders in the sandbox's /mnt/data (or a folder in it), with sizes.",
        annotations=types.ToolAnnotations(title="List files", read_only_hint=True, open_world_hint=False),
    )
    async def list_files(
        path: Annotated[str | None, Field(description="A folder relative to /mnt/data; default: /mnt/data.")] = None,
        recursive: Annotated[bool, Field(description="Include the contents of sub-folders.")] = False,
        session: SessionArg = None,
    ) -> types.CallToolResult:
        return await run(tools.list_files, path, recursive, session)

    @server.tool(
        name="delete_file",
        description="Delete a file (or a folder with its contents) from the sandbox's /mnt/data.",
        annotations=types.ToolAnnotations(title="Delete a file", read_only_hint=False, destructive_hint=True,
                                          idempotent_hint=True, open_world_hint=False),
    )
    async def delete_file(remote_path: RemotePath, session: SessionArg = None) -> types.CallToolResult:
        return await run(tools.delete_file, remote_path, session)

    @server.tool(
        name="new_session",
        description=(
            "Start over: switch to a fresh, empty session (new identifier) and delete the previous one with its "
            "variables and files where the service allows it. Use it when the state is broken or no longer "
            "needed."),
        annotations=types.ToolAnnotations(title="New session", read_only_hint=False, destructive_hint=True,
                                          idempotent_hint=False, open_world_hint=False),
    )
    async def new_session(session: SessionArg = None) -> types.CallToolResult:
        return await run(tools.new_session, session)

    return server


def build_parser(prog: str = "aca-sessions mcp") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A Model Context Protocol server (stdio) that gives an agent a sandboxed, stateful Python: "
                    "Azure Container Apps dynamic sessions at $ACA_POOL_MANAGEMENT_ENDPOINT, else this user's "
                    "local session pool. Logs go to stderr; stdout carries the protocol.",
        epilog="Docs: docs/agents.md")
    p.add_argument("--endpoint", metavar="URL",
                   help="pool management endpoint (default: $ACA_POOL_MANAGEMENT_ENDPOINT, else the local pool)")
    p.add_argument("--api-version", metavar="V", help="data-plane api-version (default: $ACA_API_VERSION; on the "
                   "local pool the newest)")
    p.add_argument("--session", metavar="ID", help="identifier of an existing session to use as the default "
                   "(default: $ACA_SESSION_ID, else a fresh one; a given session is never deleted at exit)")
    p.add_argument("--timeout", type=float, metavar="S", help="default time limit of one execution in seconds")
    p.add_argument("--local-root", metavar="DIR", default=os.getcwd(),
                   help="the local folder upload_file may read and download_file may write (default: the "
                        "current directory)")
    p.add_argument("--no-sanitize-input", dest="sanitize_input", action="store_false",
                   help="send code exactly as given (default: strip whitespace and Markdown code fences)")
    p.add_argument("--max-text", type=int, default=20_000, metavar="N",
                   help="characters of text per output section returned to the model (default: 20000)")
    p.add_argument("--keep-sessions", action="store_true",
                   help="do not delete this server's sessions when it exits")
    p.add_argument("-v", "--verbose", action="store_true", help="log each request to stderr")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "aca-sessions mcp") -> int:
    args = build_parser(prog).parse_args(argv)
    # Before the SDK sets up its own logging: ours goes to stderr, one line per record (stdout is the protocol).
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"{prog}: %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("azure").setLevel(logging.ERROR)
    if not os.path.isdir(args.local_root):
        print(f"{prog}: error: --local-root {args.local_root!r} is not a folder", file=sys.stderr)
        return 2
    tools = AgentTools(endpoint=args.endpoint, api_version=args.api_version, session_id=args.session,
                       sanitize_input=args.sanitize_input, local_root=args.local_root, timeout=args.timeout,
                       max_text=max(args.max_text, 200), keep_sessions=args.keep_sessions)
    server = build_server(tools)
    try:
        anyio.run(server.run_stdio_async)
    except KeyboardInterrupt:
        pass
    finally:
        tools.close()
    return 0
