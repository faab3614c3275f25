"""``%%aca`` / ``%aca`` and the session magics; ``load_ipython_extension`` for ``%load_ext aca_sessions``.

The kernel routes every cell through ``%%aca``, so this is the one place where remote outcomes are published
(through ``kernel/display.py``): both faces behave the same.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool

from . import _replay
from ._context import ACAContext, get_context, parse_bool
from ._display import (
    IPythonOutputs,
    Progress,
    in_kernel,
    interrupted,
    ipython_sender,
    one_line_error,
    remote_exception,
)
from ._jobs import Jobs
from ._runner import ExecutionInterrupted, RemoteRunner

__all__ = ["ACAMagics", "load_ipython_extension", "unload_ipython_extension"]

logger = logging.getLogger("aca_kernel.magics")


def _offer_replay(shell: Any, magics: ACAMagics, session: str | None) -> None:
    """The replay button under a cell that found its session's state lost (a notebook with ipywidgets only)."""
    if not in_kernel(shell):
        return
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return
    _replay.offer(lambda: magics.replay_plan(session), lambda: magics.replay(session))


def _valid_name(name: str, option: str) -> str:
    if not name.isidentifier():
        raise UsageError(f"{option} needs a Python variable name, got {name!r}.")
    return name


def _fmt_age(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@magics_class
class ACAMagics(Magics):
    """Run cells in an Azure Container Apps dynamic session (or the local session pool)."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.context: ACAContext = get_context(shell)
        self.runner = RemoteRunner(self.context)
        if self.context.jobs is None:
            self.context.jobs = Jobs(self.context, self.runner)

    # --- %%aca / %aca ------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("--session", "-s", metavar="NAME", help="Run in a named session (several per notebook).")
    @argument("--endpoint", metavar="URL", help="Pool management endpoint for this cell.")
    @argument("--api-version", metavar="VERSION", help="Data-plane API version for this cell.")
    @argument("--timeout", type=float, metavar="SECONDS", help="How long to wait for this cell.")
    @argument("--plain", action="store_true", help="Send the code exactly as typed (no rich-mode wrapper).")
    @argument("--out", "-o", metavar="VAR", help="Store the last expression's value in local variable VAR.")
    @argument("-i", dest="inputs", action="append", default=[], metavar="VAR",
              help="Send local variable VAR to the session first (repeatable).")
    @argument("--quiet", "-q", action="store_true", help="Show no outputs (errors still show).")
    @argument("--detach", action="store_true",
              help="No execution time limit: the cell runs detached in the session and this cell waits for it.")
    @argument("--background", "-b", action="store_true",
              help="Run the cell in the session without waiting: its outputs appear under the cell as they come "
                   "(no time limit); %%aca_jobs lists and stops such cells.")
    @line_cell_magic
    def aca(self, line: str = "", cell: str | None = None) -> Any:
        """Run code remotely: ``%%aca [options]`` for a cell, ``%aca [options --] code`` for one line."""
        if cell is None:
            options, sep, code = line.partition(" -- ") if line.lstrip().startswith("-") else ("", "", line)
            if line.lstrip().startswith("-") and not sep:
                raise UsageError("Put `--` between the options and the code, e.g. %aca --session s -- x + 1")
            if not code.strip():
                raise UsageError("Nothing to run: %aca CODE (or a %%aca cell).")
            return self.run_cell(code, options, whole_cell=False)
        return self.run_cell(cell, line, whole_cell=True)

    def run_cell(self, code: str, line: str = "", *, whole_cell: bool = True) -> Any:
        args = parse_argstring(self.aca, line)
        out = _valid_name(args.out, "--out") if args.out else None
        inputs = [_valid_name(name, "-i") for name in args.inputs]
        missing = [name for name in inputs if name not in self.shell.user_ns]
        if missing:
            raise UsageError(f"-i {missing[0]}: no local variable of that name.")
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("--timeout needs a positive number of seconds.")
        if not code.strip():
            return None
        where = {"session": args.session, "endpoint": args.endpoint, "api_version": args.api_version}
        if args.background:
            return self._background(code, args, inputs, where)
        progress = Progress(ipython_sender(self.shell), self.context.settings.progress_after, whole_cell)
        # The session numbers the cell like this notebook does (In[n], Cell In[n] in tracebacks).
        count = self.shell.displayhook.prompt_count
        shown = IPythonOutputs(self.shell, return_value=not whole_cell)
        try:
            for name in inputs:
                self.runner.send_variable(name, self.shell.user_ns[name], **where)
            outcome = self.runner.run(code, rich=False if args.plain else None, timeout=args.timeout,
                                      export_value=out is not None, on_wait=progress, count=count,
                                      on_output=None if args.quiet else shown.live,
                                      detached=args.detach or self.context.settings.detach, **where)
        except ExecutionInterrupted as exc:
            raise interrupted(str(exc)) from None
        except KeyboardInterrupt:  # starting the session, or a transfer (-i / --out): no user code was running
            raise interrupted("Interrupted outside the cell's remote run (while starting the session or moving "
                              "a value); nothing is left running remotely.") from None
        except UsageError:
            raise
        except Exception as exc:
            raise self._error(exc) from None
        finally:
            progress.finish()
        try:
            value = shown.finish(outcome, quiet=args.quiet)
        except Exception as exc:  # a reply we cannot show must not take the kernel down
            raise self._error(exc) from None
        if outcome.session_lost and outcome.replayable:
            _offer_replay(self.shell, self, args.session)
        if outcome.error is not None:
            err = outcome.error
            raise remote_exception(err["ename"], err["evalue"], err["traceback"])
        if out is not None:
            self.shell.user_ns[out] = outcome.value if outcome.has_value else None
        return value

    def _background(self, code: str, args: Any, inputs: list[str], where: dict[str, Any]) -> None:
        if args.out or args.plain or args.endpoint or args.api_version:
            raise UsageError("--background works in the default or a --session NAME session, without --out, "
                             "--plain, --endpoint or --api-version.")
        try:
            self.context.jobs.check(args.session)
            for name in inputs:
                self.runner.send_variable(name, self.shell.user_ns[name], **where)
        except Exception as exc:
            raise self._error(exc) from None
        job = self.context.jobs.start(code, session=args.session, count=self.shell.displayhook.prompt_count,
                                      show=in_kernel(self.shell))
        if job.widgets is None:
            print(f"Started background cell [{job.number}]; %aca_jobs shows how it goes.")

    @magic_arguments()
    @argument("--stop", type=int, metavar="N", help="Interrupt background cell N.")
    @line_magic
    def aca_jobs(self, line: str = "") -> None:
        """List the background cells (%%aca --background), with their time and state; --stop N interrupts one."""
        args = parse_argstring(self.aca_jobs, line)
        jobs = self.context.jobs
        if args.stop is not None:
            job = jobs.get(args.stop)
            if job is None:
                raise UsageError(f"No background cell {args.stop}: %aca_jobs lists them.")
            if not jobs.stop(job):
                print(f"Could not ask the session to stop background cell {job.number} (its session serves no "
                      f"file calls now); %aca_new_session{' --session ' + job.session if job.session else ''} "
                      f"ends it with its session.")
                return
            deadline = time.monotonic() + 10
            while job.running and time.monotonic() < deadline:
                time.sleep(0.1)
            print(job.describe() if not job.running else
                  f"{job.describe()}: it did not stop within 10 s (it may be inside a C extension that does not "
                  f"check for interrupts); %aca_new_session ends it with its session.")
            return
        listed = jobs.all()
        if not listed:
            print("No background cells: %%aca --background starts one.")
            return
        for job in listed:
            print(job.describe())

    def _error(self, exc: Exception) -> BaseException:
        from .._exceptions import ACASessionsError
        from .._localpool import LocalPoolError

        if not isinstance(exc, ACASessionsError | LocalPoolError | RuntimeError | OSError):
            logger.warning("unexpected failure while running a remote cell", exc_info=exc)
        return one_line_error(exc)

    # --- session magics ------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("--session", "-s", metavar="NAME", help="A named session instead of the default one.")
    @line_magic
    def aca_session(self, line: str = "") -> None:
        """Show the session: identifier, endpoint, API version, age and time left before the cooldown."""
        args = parse_argstring(self.aca_session, line)
        print(self.session_report(args.session))

    def session_report(self, name: str | None = None) -> str:
        ctx = self.context
        lines = [ctx.describe(name)]
        if ctx.uses_local_pool:
            lines.append(ctx.local_pool_note)
        state = ctx.existing(name)
        if state is not None and state.first_call is not None:
            lines.append(self._lifetime(state))
        others = [n for n in ctx.session_names() if n is not None and n != name]
        if others:
            lines.append("named sessions: " + ", ".join(sorted(others)))
        if ctx.settings.keepalive > 0:
            lines.append(f"keep-alive: every {ctx.settings.keepalive:.0f} s (the session stays allocated and billed)")
        return "\n".join(lines)

    def _lifetime(self, state: Any) -> str:
        from .._config import SESSION_API_VERSIONS

        now = time.time()
        if state.client.api_version in SESSION_API_VERSIONS:
            try:
                info = state.client.get_session()
            except Exception as exc:
                from .._exceptions import error_message

                return f"session details unavailable: {error_message(exc)}"
            parts = []
            if info.created_at:
                parts.append(f"created {_fmt_age(now - info.created_at.timestamp())} ago")
            if info.last_accessed_at:
                parts.append(f"last used {_fmt_age(now - info.last_accessed_at.timestamp())} ago")
            if info.expire_at:
                left = info.expire_at.timestamp() - now
                parts.append(f"expires at {info.expire_at:%Y-%m-%d %H:%M:%S %Z} (in {_fmt_age(left)})"
                             if left > 0 else "expired")
            return "; ".join(parts) or "the service reported no lifetime details"
        cooldown = self.context.settings.cooldown
        left = (state.last_call or now) + cooldown - now
        return (f"first call {_fmt_age(now - state.first_call)} ago, last call {_fmt_age(now - state.last_call)} ago; "
                f"estimated time left before the cooldown ends it: {_fmt_age(max(left, 0))} "
                f"(cooldown {cooldown:.0f} s assumed; set it with %aca_config cooldown=N)")

    @magic_arguments()
    @argument("--session", "-s", metavar="NAME", help="A named session instead of the default one.")
    @argument("--attach", metavar="ID", help="Join the existing session with this identifier.")
    @argument("--keep", action="store_true", help="Do not delete the old session (where the API can).")
    @line_magic
    def aca_new_session(self, line: str = "") -> None:
        """Start over on a fresh session identifier (the old session is deleted where the API version can)."""
        args = parse_argstring(self.aca_new_session, line)
        try:
            new_id = self.context.new_session(args.session, args.attach, delete_old=not args.keep)
        except Exception as exc:
            raise self._error(exc) from None
        verb = "attached to" if args.attach else "now using"
        print(f"{verb} session {new_id}")

    @line_magic
    def aca_config(self, line: str = "") -> None:
        """Show the settings, or set them: ``%aca_config rich=false timeout=60``."""
        settings = self.context.settings
        if not line.strip():
            for key, value in settings.as_dict().items():
                print(f"{key} = {value!r}")
            return
        changed = []
        for pair in line.split():
            key, sep, raw = pair.partition("=")
            if not sep or key not in settings.as_dict():
                raise UsageError(f"{pair!r}: use NAME=VALUE with NAME one of {', '.join(settings.as_dict())}.")
            value: Any = None if raw.lower() in ("", "none") else raw
            trait = settings.traits()[key]
            try:
                if value is not None and isinstance(trait, Bool):
                    value = parse_bool(raw)
                    if value is None:
                        raise ValueError("use true or false")
                elif value is not None:
                    value = trait.from_string(raw)
                setattr(settings, key, value)
            except Exception as exc:
                raise UsageError(f"{key}={raw}: {exc}") from None
            changed.append(key)
        print(", ".join(f"{k} = {getattr(settings, k)!r}" for k in changed))

    @magic_arguments()
    @argument("--session", "-s", metavar="NAME", help="A named session instead of the default one.")
    @argument("--yes", "-y", action="store_true", help="Run without showing the plan first.")
    @line_magic
    def aca_replay(self, line: str = "") -> None:
        """Rebuild a session that lost its state: show the cells (and %aca_pip packages) to re-run; --yes runs them."""
        args = parse_argstring(self.aca_replay, line)
        if args.yes:
            self.replay(args.session)
            return
        text = self.replay_plan(args.session)
        if text is None:
            print("Nothing to replay: no lost session state is recorded.")
            return
        print(text + f"\nRun %aca_replay --yes{' --session ' + args.session if args.session else ''} to do it.")

    def replay_plan(self, session: str | None = None) -> str | None:
        state = self.context.existing(session)
        return None if state is None else _replay.plan(state, state.files_kept)

    def replay(self, session: str | None = None) -> None:
        """Run the replay (the caller showed the plan: %aca_replay --yes, or the button's second click)."""
        state = self.context.existing(session)
        if state is None or (not state.replay and not state.packages):
            print("Nothing to replay: no lost session state is recorded.")
            return
        try:
            _replay.run(state, self.runner, self.shell, session)
        except ExecutionInterrupted as exc:
            raise interrupted(f"Replay stopped. {exc}") from None
        except Exception as exc:  # auth, network: one line that says what to do, not our internals
            raise self._error(exc) from None


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext aca_sessions``: register ``%%aca``, the session magics and the file magics."""
    from ._filemagics import FileMagics

    get_context(ip)
    ip.register_magics(ACAMagics)
    ip.register_magics(FileMagics)


def unload_ipython_extension(ip: Any) -> None:
    ctx = getattr(ip, "_aca_context", None)
    if ctx is not None:
        ctx.close()
        ip._aca_context = None
