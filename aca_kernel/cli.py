"""The ``aca-sessions`` command line: run code and move files in a session, run the local pool, install the kernel.

Exit codes: 0 success, 1 the code ran and failed, 2 command-line misuse, 3 service, configuration or local
I/O error (one line on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aca_kernel._config import ENV_ENDPOINT, ENV_SESSION_ID, public_endpoint
from aca_kernel._localpool import LocalPoolError  # stdlib-only at import time

if TYPE_CHECKING:
    from aca_kernel import SessionsClient

__all__ = ["main"]

ENV_LOCAL_POOL_DIR = "ACA_LOCAL_POOL_DIR"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class CLIError(Exception):
    """A one-line error for stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


def _note(message: str) -> None:
    print(f"aca-sessions: {message}", file=sys.stderr, flush=True)


# --- connecting ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    endpoint: str
    credential: str | None  # None: the client reads ACA_TOKEN or uses DefaultAzureCredential
    session_id: str | None
    verify: str | bool = True  # the local pool's CA bundle when it serves HTTPS (else SSL_CERT_FILE applies)


def _resolve_target(args: argparse.Namespace, *, for_files: bool) -> Target:
    endpoint = args.endpoint or os.environ.get(ENV_ENDPOINT)
    session = args.session or os.environ.get(ENV_SESSION_ID)
    if endpoint:
        if not session and for_files:
            _note(f"hint: no --session or {ENV_SESSION_ID}, so this is a new, empty session; "
                  "pass --session ID to reach the files of the session your code ran in")
        return Target(endpoint, None, session)
    from aca_kernel._localpool import ensure_local_pool

    try:
        pool = ensure_local_pool()
    except LocalPoolError as exc:
        raise CLIError(f"{exc}; or set {ENV_ENDPOINT} to use an Azure session pool") from exc
    if pool.started:
        _note(f"started the local session pool at {pool.endpoint}; it keeps running for the next command "
              f"(`aca-sessions pool stop` ends it; set {ENV_ENDPOINT} or --endpoint to use Azure)")
    else:
        _note(f"using the local session pool at {pool.endpoint}")
    if not session and pool.session_id:
        session = pool.session_id
    return Target(pool.endpoint, pool.token, session, pool.verify)


@contextlib.contextmanager
def _client(args: argparse.Namespace, *, for_files: bool = False, api_version: str | None = None,
            pool_level: bool = False) -> Iterator[SessionsClient]:
    from aca_kernel import SessionsClient

    target = _resolve_target(args, for_files=for_files)
    client = SessionsClient(target.endpoint, target.credential, api_version=api_version or args.api_version,
                            session_id=target.session_id, verify=target.verify)
    if target.session_id is None and not pool_level:
        # A random id makes a fresh session; tell the user how to come back to it.
        _note(f"session: {client.session_id} (pass --session {client.session_id} to reuse it)")
    with client:
        yield client


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Map library errors to one-line messages and exit codes."""
    from aca_kernel import ACASessionsError, InvalidArgumentError

    try:
        yield
    except InvalidArgumentError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc
    except ACASessionsError as exc:
        raise CLIError(str(exc)) from exc
    # A local OSError goes on to main(), which words every one of them, wherever it was raised.


# --- exec ----------------------------------------------------------------------------------------------------


def _read_code(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.code is not None and args.file is not None:
        parser.error("give either FILE, '-' or -c CODE, not both")
    if args.code is not None:
        return args.code
    if args.file is None:
        parser.error("nothing to run: give FILE, '-' (stdin) or -c CODE")
    if args.file == "-":
        return sys.stdin.read()
    try:
        return Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CLIError(f"cannot read {args.file}: not UTF-8 text") from exc


def _format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _new_image_path(extension: str) -> Path:
    """``result-<time>.png`` in the working directory, never one that exists (two runs in one second)."""
    stem = time.strftime("result-%Y%m%d-%H%M%S")
    path, n = Path(f"{stem}.{extension}"), 1
    while path.exists():
        path, n = Path(f"{stem}-{n}.{extension}"), n + 1
    return path


def cmd_exec(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    code = _read_code(args, parser)
    with _errors(), _client(args) as client:
        result = client.execute(code, timeout=args.timeout)
        image = result.image
        image_path = None
        if image is not None:
            image_path = Path(args.image_out) if args.image_out else _new_image_path(image.format or "png")
            image_path.write_bytes(image.data)
        if args.json:
            print(json.dumps({
                "status": result.status, "stdout": result.stdout, "stderr": result.stderr,
                "result": None if image is not None else result.result,
                "image": str(image_path) if image_path else None,
                "execution_time_ms": result.execution_time_ms, "session": client.session_id,
            }, ensure_ascii=False, default=repr))
        else:
            if result.stdout:
                sys.stdout.write(result.stdout if result.stdout.endswith("\n") else result.stdout + "\n")
            if result.stderr:
                sys.stderr.write(result.stderr if result.stderr.endswith("\n") else result.stderr + "\n")
            if image_path is not None:
                _note(f"image result saved to {image_path}")
            elif result.succeeded and result.result not in (None, ""):
                # A failure's details are already in stderr (the traceback); its "result" would repeat them.
                print(_format_value(result.result))
        sys.stdout.flush()
        return EXIT_OK if result.succeeded else EXIT_FAILED


# --- install / lab / pool ------------------------------------------------------------------------------------


def cmd_pool(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from aca_kernel import _localpool

    # A LocalPoolError is turned into the one-line error by main().
    if args.tls and args.pool_command != "start":
        parser.error("--tls goes with `pool start`")
    if args.pool_command == "stop":
        stopped = _localpool.stop_local_pool()
        print("stopped the local session pool" if stopped else "no local session pool was running")
        return EXIT_OK
    if args.pool_command == "start":
        pool = _localpool.ensure_local_pool(tls=args.tls)
    else:
        pool = _localpool.local_pool_status()
        if pool is None:
            print(f"no local session pool is running (state in {_localpool.state_dir()})")
            return EXIT_FAILED
    verb = "started" if pool.started else "running"
    count = _localpool.session_count(pool)
    ca = f"  ca bundle: {pool.ca_bundle}\n" if pool.ca_bundle else ""
    print(f"local session pool {verb}\n  endpoint: {pool.endpoint}\n{ca}  pid: {pool.pid}\n"
          f"  sessions: {'unknown' if count is None else count}\n"
          f"  default session: {pool.session_id}\n  log: {pool.log_file}")
    return EXIT_OK


#: the largest websocket message `aca-sessions lab` accepts (Jupyter Server's default is Tornado's 10 MiB): a
#: widget's comm message carrying a whole file up to the service's 128 MB limit, with room for its framing
LAB_WEBSOCKET_MAX_BYTES = 256 * 1024 * 1024


def lab_server_args(argv: Sequence[str]) -> list[str]:
    """Lab's command line: the user's arguments, plus a websocket limit unless they set tornado_settings."""
    if any("tornado_settings" in arg for arg in argv):
        return list(argv)
    return [*argv, f'--ServerApp.tornado_settings={{"websocket_max_message_size": {LAB_WEBSOCKET_MAX_BYTES}}}']


# `jupyter lab` options and subcommands that print something and exit, or manage Lab itself: no kernel runs.
_LAB_NO_SERVER = {"-h", "--help", "--help-all", "--version", "build", "clean", "licenses", "path", "paths",
                  "workspace", "workspaces", "extension", "list", "password", "stop"}


def cmd_lab(argv: Sequence[str]) -> int:
    import importlib.util
    import subprocess

    from aca_kernel import _localpool
    from aca_kernel.kernel.install import ensure_kernelspec

    if importlib.util.find_spec("jupyterlab") is None:
        raise CLIError("JupyterLab is not installed: pip install 'aca-sessions[lab]'")
    env = dict(os.environ)
    if env.get(ENV_ENDPOINT):
        _note(f"JupyterLab kernels will use the session pool at {public_endpoint(env[ENV_ENDPOINT])}")
    elif not _LAB_NO_SERVER.intersection(argv):
        pool = _localpool.ensure_local_pool()  # a LocalPoolError becomes main()'s one-line error
        _note(f"{'started' if pool.started else 'using'} the local session pool at {pool.endpoint}")
        # The kernels find the pool themselves (the state directory, not a fixed endpoint), so they show the
        # "running on the local session pool" note, follow the pool if it is restarted while Lab runs, and trust
        # its CA when it serves HTTPS (LocalPool.verify).
        env[ENV_LOCAL_POOL_DIR] = str(_localpool.state_dir())
    # Found already (wheel or `aca-sessions install`), or a private copy added to JUPYTER_PATH for Lab.
    ensure_kernelspec(env, _localpool.state_dir() / "aca-sessions-jupyter")
    cmd = [sys.executable, "-m", "jupyterlab", *lab_server_args(argv)]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in argv:
        cmd.append("--allow-root")  # Lab refuses to start as root otherwise (containers, CI)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        # Become Lab: signals (Ctrl-C, SIGTERM from a supervisor) then reach it directly, with no orphan left.
        os.execve(sys.executable, cmd, env)
    return subprocess.call(cmd, env=env)  # pragma: no cover - Windows has no real exec


# --- parser --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aca-sessions",
        description="Run code and move files in Azure Container Apps dynamic sessions (or the local session pool), "
                    "run the local pool, install the Jupyter kernel.",
        epilog="exit codes: 0 ok, 1 the code failed, 2 usage error, 3 service/configuration error. "
               "Docs: docs/cli.md")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--endpoint", metavar="URL",
                      help=f"pool management endpoint (default: ${ENV_ENDPOINT}, else the local pool)")
    conn.add_argument("--session", metavar="ID", help=f"session identifier (default: ${ENV_SESSION_ID}, else the "
                      "local pool's default session, else a new one)")
    conn.add_argument("--api-version", metavar="V", help="data-plane api-version (default: $ACA_API_VERSION)")

    ex = sub.add_parser("exec", parents=[conn], help="run Python code in a session and print its output")
    ex.add_argument("file", nargs="?", metavar="FILE", help="a Python file, or '-' for stdin")
    ex.add_argument("-c", dest="code", metavar="CODE", help="code to run")
    ex.add_argument("--timeout", type=float, metavar="S", help="seconds to wait for the execution")
    ex.add_argument("--image-out", metavar="PATH", help="where to save an image result (default: result-<time>.png)")
    ex.add_argument("--json", action="store_true", help="print the whole result as one JSON object")
    ex.set_defaults(parser=ex)

    # `files` lives in its own module, which uses this one's helpers: imported here, not at the top.
    from aca_kernel._cli_files import add_files_parser

    add_files_parser(sub, conn)

    from aca_kernel._cli_sessions import add_sessions_parser

    add_sessions_parser(sub, conn)

    pool = sub.add_parser("pool", help="the local session pool: status, start, stop")
    pool.add_argument("pool_command", choices=["status", "start", "stop"], metavar="{status,start,stop}")
    pool.add_argument("--tls", action="store_true",
                      help="start: serve HTTPS with a local CA (its bundle path is printed, for SSL_CERT_FILE)")
    pool.set_defaults(parser=pool)

    # Subcommands whose parsing belongs to another module; main() dispatches them before parsing.
    sub.add_parser("install", help="install the 'ACA Sessions' Jupyter kernelspec (see --help)", add_help=False)
    sub.add_parser("emulator", help="run a local session pool in the foreground (see --help)", add_help=False)
    sub.add_parser("lab", help="start JupyterLab wired to the local pool or $" + ENV_ENDPOINT, add_help=False)
    sub.add_parser("mcp", help="serve a Model Context Protocol server (stdio) for agents (see --help)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "emulator":
        # Before any logging set-up here: the emulator configures its own (--log-level, timestamps).
        from aca_kernel.emulator import main as emulator_main

        return emulator_main(argv[1:])
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    if verbose:
        argv = argv[1:]
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="aca-sessions: %(message)s")
    if not verbose:
        # azure-identity logs every failed credential over many lines; our one-line error already says what to do.
        logging.getLogger("azure").setLevel(logging.ERROR)
    try:
        if argv and argv[0] == "lab":
            return cmd_lab(argv[1:])
        if argv and argv[0] == "install":
            from aca_kernel.kernel.install import main as install_main

            return install_main(argv[1:], prog="aca-sessions install")
        if argv and argv[0] == "mcp":
            from aca_kernel.mcp import main as mcp_main

            return mcp_main(argv[1:], prog="aca-sessions mcp")
        parser = build_parser()
        args = parser.parse_args(argv)
        from aca_kernel._cli_files import cmd_files
        from aca_kernel._cli_sessions import cmd_sessions

        handlers = {"exec": cmd_exec, "files": cmd_files, "pool": cmd_pool, "sessions": cmd_sessions}
        if args.command not in handlers:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        # Usage errors found after parsing should show the subcommand's usage, not the top level's.
        return handlers[args.command](args, getattr(args, "parser", parser))
    except (CLIError, LocalPoolError) as exc:
        print(f"aca-sessions: error: {exc}", file=sys.stderr)
        return getattr(exc, "code", EXIT_ERROR)
    except KeyboardInterrupt:
        print("aca-sessions: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a local file the user named: not a bug, one line as a shell would say it
        from aca_kernel._exceptions import error_message

        print(f"aca-sessions: error: {error_message(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if verbose:
            raise  # -v: the full traceback, for a bug report
        message = " ".join(str(exc).split()) or "no details"
        print(f"aca-sessions: error: unexpected {type(exc).__name__}: {message} (rerun with -v for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR
