"""Install the "ACA Sessions" kernelspec: ``aca-sessions install`` or ``python -m aca_kernel.kernel.install``.

The wheel already ships the spec as ``share/jupyter/kernels/aca_sessions`` (found by Jupyter and VS Code in the
same environment), so this is only needed to install it elsewhere (``--user``), under another name, or with
environment variables baked in (``--env ACA_POOL_MANAGEMENT_ENDPOINT=...``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["DEFAULT_NAME", "add_arguments", "ensure_kernelspec", "find_kernelspec_dir", "install", "kernel_json",
           "kernel_protocol_version", "main", "run"]

logger = logging.getLogger(__name__)

DEFAULT_NAME = "aca_sessions"
DISPLAY_NAME = "ACA Sessions"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KERNEL_NAME = re.compile(r"^[a-z0-9._-]+$", re.IGNORECASE)


def find_kernelspec_dir() -> Path | None:
    """The directory holding the packaged kernel.json and logos: source tree first, then the installed wheel."""
    candidates = [
        Path(__file__).resolve().parents[2] / "kernelspec" / DEFAULT_NAME,  # source checkout / editable install
        Path(sys.prefix) / "share" / "jupyter" / "kernels" / DEFAULT_NAME,  # wheel's shared-data
    ]
    for d in candidates:
        if (d / "kernel.json").is_file():
            return d
    return None


def kernel_protocol_version() -> str:
    """The messaging protocol version the kernel speaks: the one ipykernel (its base class) reports in kernel_info."""
    from ipykernel import kernel_protocol_version as version

    return str(version)


def kernel_json(
    *, env: Mapping[str, str] | None = None, display_name: str | None = None, executable: str | None = None
) -> dict:
    """The kernel.json content written by :func:`install` (argv pinned to this interpreter)."""
    source = find_kernelspec_dir()
    spec: dict = json.loads((source / "kernel.json").read_text()) if source else {
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }
    # Pin the interpreter: a spec installed with --user must not depend on whichever "python" is on PATH.
    spec["argv"] = [executable or sys.executable, "-m", "aca_kernel.kernel", "-f", "{connection_file}"]
    # What this interpreter's kernel will really report (the shipped file states the version it was made with).
    spec["kernel_protocol_version"] = kernel_protocol_version()
    if display_name:
        spec["display_name"] = display_name
    if env:
        spec["env"] = dict(env)
    return spec


def install(
    *,
    user: bool = False,
    prefix: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    name: str = DEFAULT_NAME,
    display_name: str | None = None,
) -> str:
    """Install the kernelspec and return the directory it was written to.

    With neither ``user`` nor ``prefix``, installs into this environment (``sys.prefix``) when running in a
    virtualenv, else into the user's Jupyter data directory, so it never needs root.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    if not _KERNEL_NAME.match(name):
        raise ValueError(f"invalid kernel name {name!r}: use letters, digits, '.', '_' or '-'")
    if not user and prefix is None:
        if sys.prefix != sys.base_prefix:
            prefix = sys.prefix
        else:
            user = True
    if display_name is None and name != DEFAULT_NAME:
        display_name = f"{DISPLAY_NAME} ({name})"
    spec = kernel_json(env=env, display_name=display_name)
    source = find_kernelspec_dir()
    with tempfile.TemporaryDirectory() as td:
        os.chmod(td, 0o755)  # install_kernel_spec copies the mode; the default 0700 would hide it from others
        for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
            if source and (source / logo).is_file():
                shutil.copy(source / logo, Path(td) / logo)
        (Path(td) / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        dest = KernelSpecManager().install_kernel_spec(
            td, name, user=user, prefix=os.fspath(prefix) if prefix is not None else None
        )
    if env and any("TOKEN" in k.upper() or "SECRET" in k.upper() for k in env):
        # The value is not echoed anywhere, but the user should know it sits in a plain file.
        logger.warning("kernel.json in %s holds a credential in plain text; prefer az login instead", dest)
    return dest


def ensure_kernelspec(env: dict[str, str], fallback_root: Path) -> None:
    """Make the kernelspec findable by a Jupyter started with ``env``: if Jupyter does not already find one,
    install a private copy under ``fallback_root`` and put it first on ``env["JUPYTER_PATH"]``."""
    from jupyter_client.kernelspec import KernelSpecManager

    if DEFAULT_NAME in KernelSpecManager().find_kernel_specs():
        return
    path = str(fallback_root / "share" / "jupyter")
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (path, env.get("JUPYTER_PATH")) if p)
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]  # so install_kernel_spec knows the path will be searched
    install(prefix=fallback_root, name=DEFAULT_NAME)


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; raises ValueError on a malformed item."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        # Never echo the item itself: it may be a token typed with the wrong separator.
        if not sep:
            raise ValueError("--env expects NAME=VALUE (an item has no '=')")
        if not _ENV_NAME.match(key):
            raise ValueError(f"--env: {key!r} is not a valid environment variable name")
        env[key] = value
    return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The install options, shared by ``aca-sessions install`` and ``python -m aca_kernel.kernel.install``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user (~/.local/share/jupyter)")
    where.add_argument("--sys-prefix", action="store_true", help=f"install into this environment ({sys.prefix})")
    where.add_argument("--prefix", metavar="P", help="install into the prefix P (P/share/jupyter/kernels)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable for the kernel, e.g. ACA_POOL_MANAGEMENT_ENDPOINT=https://...")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"kernelspec name (default: {DEFAULT_NAME})")
    parser.add_argument("--display-name", help=f"name shown in Jupyter (default: {DISPLAY_NAME!r})")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        env = parse_env(args.env)
    except ValueError as exc:
        parser.error(str(exc))
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        dest = install(user=args.user, prefix=prefix, env=env, name=args.name, display_name=args.display_name)
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: cannot install the kernelspec: {exc.strerror or exc}{where}; try --user or --sys-prefix",
              file=sys.stderr)
        return 3
    print(f"Installed kernelspec {args.name} in {dest}")
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m aca_kernel.kernel.install") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
