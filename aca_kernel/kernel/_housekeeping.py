"""Front ends' housekeeping requests: where they run, and how they answer when the session cannot.

Front ends learn about a kernel with executions of their own. VS Code's Jupyter extension sends its helper code
(start-up set-up, the Variables view, the Data Viewer) with ``silent: false, store_history: false`` and reads
what it prints; other tools send ``silent: true`` and read ``user_expressions``. A user's cell is always stored
in the history, so ``silent`` or ``store_history: false`` marks a request as housekeeping. The rule (also in
docs/kernel.md, "What runs where"):

1. Code that prepares this process runs here, always: the notebook's own path (``__vsc_ipynb_file__``), the
   working directory and ``sys.path``, the ipywidgets version probe (widgets are served by this kernel), VS
   Code's chat bridge, the debugger's cell hook.
2. Before the default session is in use (no remote cell yet, or after ``%aca_new_session``) everything runs
   here, as in a local kernel: a front end opening a notebook allocates no session. So do the inspection
   requests the Variables view sends for the names it listed here.
3. Afterwards the request runs in the default session, as one call that stops waiting after
   ``housekeeping_timeout``: not in the history, no execution count, silent ones show nothing. ``%%aca
   --session NAME`` cells do not change which session that is.
4. Silent set-up that only imports, defines and assigns (JupyterLab's variable inspector sends its helpers so,
   once, when the kernel starts) is also mirrored: it goes along with each request sent to the session, which
   runs it once per process (so again after the session lost its state).
5. When the session cannot answer (network, auth, timeout, an interrupt, a lost state) the reply is quiet:
   status ok, no output, an error entry for each user expression; the next cell reports a lost state. A request
   that arrives in a subshell while the kernel runs a cell is answered that way at once; on the main shell it
   waits its turn, as in any kernel. So is one that arrives while a background cell runs in the default
   session, and one for a session that has probably ended (its state found lost, or idle past the pool's
   cooldown with no keep-alive): asking it would make the service allocate a new, empty session.
"""

from __future__ import annotations

import ast
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from ..notebook._display import messages

if TYPE_CHECKING:
    from .kernel import ACAKernel

__all__ = ["Housekeeping", "prepares_this_process"]

logger = logging.getLogger("aca_kernel.kernel")

_LOCAL_SETUP = re.compile(
    r"__vsc_ipynb_file__"  # the notebook's path on this machine
    r"|\bchdir\(|^\s*%cd\b|\bsys\.path\.(insert|append|extend)\b"  # working directory and import path
    r"|_VSCODE_ipywidgets|\bipywidgets\.__version__"  # the widget version probe: widgets are served here
    r"|__VSCODE_inject_module|sys\.modules\[[\"']vscode[\"']\]"  # VS Code's chat bridge displays here
    r"|IPYKERNEL_CELL_NAME",  # the debugger's cell hook
    re.MULTILINE,
)


def prepares_this_process(code: str) -> bool:
    """True for start-up code that sets up the local process (see rule 1), which never goes to the session."""
    return _LOCAL_SETUP.search(code) is not None


_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                ast.AnnAssign, ast.AugAssign, ast.Global, ast.Pass)
_SETUP_LIMIT = 16


def defines_only(code: str) -> bool:
    """True for plain Python that only imports, defines and assigns: set-up, mirrored into the session (rule 4)."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):  # IPython syntax (magics) too: it does something
        return False
    return bool(body) and _quiet(body)


def _quiet(body: list[ast.stmt]) -> bool:
    for node in body:
        if isinstance(node, ast.Try):
            parts = (node.body, node.orelse, node.finalbody, *(handler.body for handler in node.handlers))
            if not all(_quiet(part) for part in parts):
                return False
        elif isinstance(node, ast.If):
            if not (_quiet(node.body) and _quiet(node.orelse)):
                return False
        elif not isinstance(node, _DEFINITIONS) and not (isinstance(node, ast.Expr)
                                                          and isinstance(node.value, ast.Constant)):
            return False
    return True


class Housekeeping:
    """Routes and answers the housekeeping requests of one :class:`ACAKernel`."""

    def __init__(self, kernel: ACAKernel) -> None:
        self.kernel = kernel
        self.setup: list[str] = []  # silent set-up to mirror into the session (rule 4), oldest first

    def session_in_use(self) -> bool:
        """True once the default session was used (so asking it allocates nothing)."""
        state = self.kernel.context.existing(None)
        return state is not None and state.first_call is not None

    def place(self, code: str, silent: bool, store_history: bool, where: str) -> Literal["local", "session"] | None:
        """Where a request runs: None when it is not housekeeping (a user's cell, or one the routing keeps here).

        Silent set-up is remembered here for the session (rule 4), wherever it runs now.
        """
        if where != "remote" or not (silent or not store_history):
            return None
        if prepares_this_process(code):
            return "local"
        if silent and code not in self.setup and defines_only(code):
            self.setup = [*self.setup, code][-_SETUP_LIMIT:]
        return "session" if self.session_in_use() else "local"

    def run(self, code: str, silent: bool, user_expressions: dict[str, str]) -> dict[str, Any]:
        """Run a request in the default session; the execute_reply content."""
        kernel = self.kernel
        count = kernel.shell.execution_count
        # as ipykernel counts a request kept out of the history: the number of the last cell
        reply: dict[str, Any] = {"status": "ok", "execution_count": count - 1, "user_expressions": {}, "payload": []}
        if self._cell_running():
            return _unanswered(reply, user_expressions, "a cell is running")
        jobs = kernel.context.jobs
        if jobs is not None and jobs.busy(None) is not None:  # it would wait behind the background cell
            return _unanswered(reply, user_expressions, "a background cell is running in the session")
        if self._probably_gone():
            # Asking would make the service allocate a new, empty session nobody asked for (and keep it alive).
            return _unanswered(reply, user_expressions, "the session has probably ended; the next cell says so")
        try:
            outcome = kernel.runner.housekeeping("" if code in self.setup else code, count=count, silent=silent,
                                                 user_expressions=user_expressions, setup=self.setup)
        except (Exception, KeyboardInterrupt) as exc:  # unreachable, timed out, interrupted: a quiet answer
            from .._exceptions import error_message

            return _unanswered(reply, user_expressions, error_message(exc))
        try:
            if not silent:
                for kind, content in messages(outcome):
                    kernel._send(kind, content)
            reply["payload"] = kernel._payload(outcome.payload)
        except Exception as exc:  # a reply we cannot show must not take the kernel down
            logger.warning("could not show a housekeeping request's outputs", exc_info=exc)
        if outcome.error is not None:
            reply.update(status="error", **{k: outcome.error[k] for k in ("ename", "evalue", "traceback")})
        else:
            reply["user_expressions"] = outcome.user_expressions
        return reply

    def _probably_gone(self) -> bool:
        """The default session lost its state, or sat idle past the pool's cooldown with nothing keeping it."""
        state = self.kernel.context.existing(None)
        if state is None or state.first_call is None:
            return False
        if state.lost_pending:
            return True
        settings = self.kernel.context.settings
        idle = time.time() - (state.last_call or state.first_call)
        return not settings.keepalive and idle > settings.cooldown

    def _cell_running(self) -> bool:
        # ipykernel 7 runs a subshell's requests in a thread of their own while the main shell may be running a
        # cell; the session is busy with that cell, and a request sent there would queue behind it.
        lock = getattr(self.kernel, "_main_asyncio_lock", None)
        return threading.current_thread() is not threading.main_thread() and lock is not None and lock.locked()


def _unanswered(reply: dict[str, Any], user_expressions: dict[str, str], why: str) -> dict[str, Any]:
    logger.info("a housekeeping request was answered empty: %s", why)
    reply["user_expressions"] = {name: {"status": "error", "ename": "SessionUnavailable", "evalue": why,
                                        "traceback": []} for name in user_expressions}
    return reply
