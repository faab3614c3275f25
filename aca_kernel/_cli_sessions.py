"""`aca-sessions sessions`: list the pool's sessions, show one, delete one (2025-02-02-preview and later)."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aca_kernel._config import ENV_API_VERSION, ENV_ENDPOINT, ENV_SESSION_ID, SESSION_API_VERSIONS
from aca_kernel.cli import EXIT_OK, EXIT_USAGE, CLIError, _client, _errors, _note

if TYPE_CHECKING:
    from aca_kernel import SessionInfo

__all__ = ["add_sessions_parser", "cmd_sessions"]


def add_sessions_parser(sub: Any, conn: argparse.ArgumentParser) -> None:
    sessions = sub.add_parser("sessions", help="the pool's sessions: list, show, delete",
                              description="List the pool's sessions, show one, or delete one with its files. "
                                          f"Uses api-version {SESSION_API_VERSIONS[-1]} unless --api-version or "
                                          f"${ENV_API_VERSION} says otherwise ({SESSION_API_VERSIONS[0]} or "
                                          "later).")
    verbs = sessions.add_subparsers(dest="sessions_command", metavar="{list,show,delete}", required=True)
    ls = verbs.add_parser("list", parents=[conn], help="list the pool's sessions")
    ls.add_argument("--json", action="store_true", help="print one JSON array")
    show = verbs.add_parser("show", parents=[conn], help="show one session (default: --session, "
                            f"${ENV_SESSION_ID}, or the local pool's default session)")
    show.add_argument("id", nargs="?", metavar="ID", help="the session identifier")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    rm = verbs.add_parser("delete", parents=[conn], help="delete a session, its kernel state and its files")
    rm.add_argument("id", nargs="?", metavar="ID", help="the session identifier")
    for p in (ls, show, rm):
        p.set_defaults(parser=p)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _as_json(info: SessionInfo) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"identifier": info.identifier, "created_at": iso(info.created_at),
            "last_accessed_at": iso(info.last_accessed_at), "expire_at": iso(info.expire_at), "etag": info.etag}


def cmd_sessions(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from aca_kernel import NotSupportedError

    if getattr(args, "id", None):
        if args.session and args.session != args.id:
            parser.error("give the session either as ID or as --session, not both")
        args.session = args.id
    named = args.session or os.environ.get(ENV_SESSION_ID)
    if args.sessions_command == "delete" and not named and (args.endpoint or os.environ.get(ENV_ENDPOINT)):
        raise CLIError("name the session to delete: aca-sessions sessions delete ID", EXIT_USAGE)
    # These calls exist from 2025-02-02-preview on: without a choice, use the newest version.
    version = args.api_version or os.environ.get(ENV_API_VERSION) or SESSION_API_VERSIONS[-1]
    try:
        with _errors(), _client(args, api_version=version, pool_level=args.sessions_command == "list") as client:
            if args.sessions_command == "delete":
                client.delete_session()
                print(f"deleted session {client.session_id}")
                return EXIT_OK
            sessions = client.list_sessions()
            if args.sessions_command == "list":
                _print_list(sessions, args.json)
                return EXIT_OK
            # Looked up in the listing: GET session would create a session that does not exist yet.
            found = next((s for s in sessions if s.identifier == client.session_id), None)
            if found is None:
                raise CLIError(f"no session {client.session_id} in the pool (never used, deleted, or expired "
                               f"after the pool's cooldown)")
            _print_one(found, args.json)
            return EXIT_OK
    except CLIError as exc:
        if isinstance(exc.__cause__, NotSupportedError):
            raise CLIError(f"`sessions {args.sessions_command}` needs api-version {SESSION_API_VERSIONS[0]} or "
                           f"later, not {version}: pass --api-version {SESSION_API_VERSIONS[-1]}") from exc
        raise


def _print_list(sessions: list[SessionInfo], as_json: bool) -> None:
    sessions = sorted(sessions, key=lambda s: (s.created_at is None, s.created_at or datetime.min))
    if as_json:
        print(json.dumps([_as_json(s) for s in sessions]))
        return
    if not sessions:
        _note("no sessions in the pool")
        return
    width = max(len("IDENTIFIER"), *(len(s.identifier) for s in sessions))
    print(f"{'IDENTIFIER':{width}}  {'CREATED':19}  {'LAST USED':19}  EXPIRES")
    for s in sessions:
        print(f"{s.identifier:{width}}  {_when(s.created_at):19}  {_when(s.last_accessed_at):19}  "
              f"{_when(s.expire_at)}")


def _print_one(info: SessionInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_as_json(info)))
        return
    print(f"identifier: {info.identifier}\ncreated: {_when(info.created_at)}\n"
          f"last used: {_when(info.last_accessed_at)}\nexpires: {_when(info.expire_at)}\n"
          f"etag: {info.etag or '-'}")
