"""``aca-sessions emulator`` / ``python -m aca_kernel.emulator``: argument parsing and the uvicorn server.

Prints exactly one ``pool endpoint: <URL>`` line to stdout once it accepts requests (then ``ca bundle: <path>``
when it serves HTTPS with its own CA, and ``token: <T>`` when it generated the token); everything else is logging
on stderr. Serves until SIGINT or SIGTERM, then stops every session kernel it started.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

logger = logging.getLogger("aca_kernel.emulator")

TOKEN_ENV = "ACA_EMULATOR_TOKEN"


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    return parse


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535; 0 picks a free one)")
    return value


def build_parser(prog: str = "aca-sessions emulator") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A local Azure Container Apps dynamic sessions pool (code interpreter) on loopback: the "
                    "same REST API, each session a real IPython kernel in its own bubblewrap sandbox.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default: 8000; 0 picks a free port)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                   help=f"the bearer token every request must carry (default: ${TOKEN_ENV}, which unlike a "
                        "flag other local users cannot see in ps; else a random one, printed)")
    p.add_argument("--data-dir", type=Path,
                   help="where session files live, one directory per session (default: a temporary directory "
                        "removed at exit)")
    p.add_argument("--cooldown", type=_positive(float), default=300.0,
                   help="seconds a session may stay idle before it is destroyed (default: 300)")
    p.add_argument("--max-sessions", type=_positive(int), default=100,
                   help="live sessions per pool name; more are answered 404 (default: 100)")
    p.add_argument("--max-total-sessions", type=_positive(int), default=None,
                   help="live sessions of the whole process, all pool names together (default: the larger of "
                        "--max-sessions and 100); the open-file limit may allow fewer")
    p.add_argument("--idle-exit", type=_positive(float), default=None, metavar="SECONDS",
                   help="exit after SECONDS with no session and no request (default: never; the background "
                        "pool of `aca-sessions pool` gets 3600)")
    p.add_argument("--ready", type=_non_negative_int, default=2,
                   help="kernels kept started ahead for new sessions (default: 2)")
    p.add_argument("--timeout", type=_positive(float), default=220.0,
                   help="execution time limit in seconds (default: 220, as the service)")
    p.add_argument("--memory", default="2G",
                   help="memory limit per session, e.g. 512M or 2G; 'none' for no limit (default: 2G)")
    p.add_argument("--python", default=sys.executable,
                   help="the interpreter (with ipykernel) that sessions run (default: this one)")
    p.add_argument("--serialize-files", action="store_true",
                   help="make a session's file calls wait while it runs code (whether the service does is not "
                        "documented; clients must cope with both)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run session kernels without bubblewrap: NOT isolated from each other or from you")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log level on stderr (default: info)")
    tls = p.add_argument_group("HTTPS")
    tls.add_argument("--tls", action="store_true",
                     help="serve HTTPS with a local CA and a certificate for localhost/127.0.0.1/::1, made once "
                          "under the data folder; prints 'ca bundle: <path>' for SSL_CERT_FILE or verify=")
    tls.add_argument("--certfile", type=Path, metavar="PEM",
                     help="serve HTTPS with this certificate (chain) instead; implies --tls")
    tls.add_argument("--keyfile", type=Path, metavar="PEM",
                     help="the private key of --certfile (default: in the --certfile file)")
    tls.add_argument("--tls-dir", type=Path, metavar="DIR",
                     help="where --tls keeps its CA and certificate (default: DATA_DIR/tls); a pool started again "
                          "with the same folder keeps the CA its clients trust")
    return p


def _endpoint_url(host: str, port: int, scheme: str = "http") -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{scheme}://{host}:{port}"
    if address.is_unspecified:
        # Bound to every interface: print the loopback URL, which always reaches it.
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"{scheme}://[{address}]:{port}" if address.version == 6 else f"{scheme}://{address}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_files(args: argparse.Namespace, data_dir: Path) -> Any:
    """The certificate to serve (generated, or the user's), or None for plain HTTP; ValueError when unusable."""
    from .tls import TLSFiles, ensure_certificates, server_context

    if args.certfile is not None:
        files = TLSFiles(args.certfile.absolute(), args.keyfile.absolute() if args.keyfile else None, None)
    elif args.tls:
        files = ensure_certificates(args.tls_dir.absolute() if args.tls_dir else data_dir / "tls")
    else:
        return None
    server_context(files.certfile, files.keyfile)  # fails here, with a clear line, not inside uvicorn
    return files


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _serve(app: Any, sock: socket.socket, backend: Any, announce: Callable[[], None], log_level: str,
           tls: Any = None) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                announce()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Kernels first: running executions then end at once instead of holding the shutdown.
            await backend.close()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after shutdown, which would turn a clean stop into a crash.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    # uvicorn's own INFO lines (started, shutting down) only at --log-level debug: our logger says it all.
    ssl_files: dict[str, Any] = {}
    if tls is not None:
        ssl_files = {"ssl_certfile": str(tls.certfile), "ssl_keyfile": str(tls.keyfile) if tls.keyfile else None}
    config = uvicorn.Config(app, log_config=None, log_level="debug" if log_level == "debug" else "warning",
                            access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, server_header=False, **ssl_files,
                            # longer than the client keeps an idle connection (aca_kernel/_http.py), so the
                            # client, not the pool, closes it: never under a request in flight
                            timeout_keep_alive=300)
    Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None, prog: str = "aca-sessions emulator") -> int:
    """Run the local session pool until SIGINT/SIGTERM; returns the process exit status."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from .app import create_app
    from .backend import Backend, PoolSettings
    from .limits import raise_open_file_limit
    from .runtime import SandboxConfig, SessionKernel, check_sandbox
    from .tree import remove_tree

    raise_open_file_limit()

    memory = None if args.memory.strip().lower() in ("none", "0", "") else args.memory
    config = SandboxConfig(enabled=not args.no_sandbox, memory=memory, python=args.python)
    try:
        check_sandbox(config)
    except RuntimeError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.no_sandbox:
        logger.warning("=" * 78)
        logger.warning("--no-sandbox: sessions are NOT isolated. Their code runs as you, can read and write "
                       "your files, reach the network and see each other.")
        logger.warning("=" * 78)
    if args.tls and args.certfile is None and not (_is_loopback(args.host) or _is_unspecified(args.host)):
        print(f"{prog}: --tls makes a certificate for localhost, 127.0.0.1 and ::1 only; to serve HTTPS on "
              f"{args.host}, pass --certfile/--keyfile for that name", file=sys.stderr)
        return 2
    if args.keyfile is not None and args.certfile is None:
        print(f"{prog}: --keyfile needs --certfile", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        logger.warning("binding %s: the pool is reachable from other machines; it runs their code", args.host)

    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc.strerror} "
              "(use another --port, or --port 0 for a free one)", file=sys.stderr)
        return 2

    own_data_dir = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="aca-pool-")) if own_data_dir else args.data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        tls = _tls_files(args, data_dir)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sock.close()
        if own_data_dir:
            remove_tree(data_dir)
        return 2
    token = args.token or secrets.token_urlsafe(24)
    settings = PoolSettings(data_dir=data_dir, cooldown=args.cooldown, max_sessions=args.max_sessions,
                            ready=args.ready, timeout=args.timeout, python=args.python,
                            max_total_sessions=args.max_total_sessions or max(args.max_sessions, 100),
                            idle_exit=args.idle_exit, own_data_dir=own_data_dir,
                            serialize_files=args.serialize_files)
    backend = Backend(settings, lambda data, run: SessionKernel(data, run, config))
    app = create_app(backend, token)
    url = _endpoint_url(args.host, sock.getsockname()[1], "https" if tls is not None else "http")

    def announce() -> None:
        print(f"pool endpoint: {url}", flush=True)
        if tls is not None and tls.ca_bundle is not None:
            print(f"ca bundle: {tls.ca_bundle}", flush=True)
        if not args.token:
            print(f"token: {token}", flush=True)
        logger.info("serving on %s (data in %s, %s)", url, data_dir,
                    "no sandbox" if args.no_sandbox else "sandboxed sessions")

    try:
        _serve(app, sock, backend, announce, args.log_level, tls)
    finally:
        sock.close()
        if own_data_dir:
            remove_tree(data_dir)
    return 0
