"""Rebuilding a session that lost its state: the plan (what would run), the confirm step, and the run.

A session can lose its Python state (its kernel restarted: crash, out of memory) while its files in /mnt/data
stay, or lose everything (recycled after the cooldown, deleted). Re-running the cells that built the state is
then the fastest way back, but a cell that appended to a file would append again. So ``%aca_replay`` first shows
what it would do, in the session's own words (the prompt numbers and first lines of the cells, the packages of
``%aca_pip``), and runs only when confirmed (``--yes``, or the button's second click).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._context import SessionState
    from ._runner import RemoteRunner

__all__ = ["ReplayCell", "offer", "plan", "run"]


@dataclass(frozen=True)
class ReplayCell:
    """One cell that built a session's state: its prompt number there, and its code."""

    count: int | None
    code: str
    sent_value: str | None = None  # a local value moved with -i: it cannot be replayed from here

    def describe(self) -> str:
        if self.sent_value is not None:
            return f"-i {self.sent_value} (a local value: send it again with -i)"
        first = next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")
        more = len([ln for ln in self.code.splitlines() if ln.strip()]) - 1
        label = f"In [{self.count}]" if self.count is not None else "cell"
        return f"{label}: {first[:70]}{'…' if len(first) > 70 else ''}" + (f"  (+{more} lines)" if more > 0 else "")


def plan(state: SessionState, files_kept: bool) -> str | None:
    """What a confirmed replay would do, as lines for a person; None when there is nothing to replay."""
    cells, packages = list(state.replay), list(state.packages)
    if not cells and not packages:
        return None
    lines = [f"%aca_replay would rebuild session {state.client.session_id}:"]
    if packages:
        lines.append(f"  reinstall {len(packages)} package(s) installed with %aca_pip")
    for cell in cells:
        lines.append(f"  {cell.describe()}")
    if files_kept and any(c.sent_value is None for c in cells):
        lines.append("Its files in /mnt/data were kept: a cell that writes or appends to a file will do so again.")
    return "\n".join(lines)


def run(state: SessionState, runner: RemoteRunner, shell: Any, session: str | None) -> None:
    """Reinstall the packages, then re-run the recorded cells in order; stop at the first that fails.

    A cell leaves the list once it ran, so a replay stopped midway (an error, an interrupt) resumes after it.
    """
    if state.packages:
        state.reinstall_packages(shell)
    cells = list(state.replay)
    for n, cell in enumerate(cells, 1):
        # off the list before it runs: a cell interrupted midway is not run again by a later replay
        state.replay.pop(0)
        if cell.sent_value is not None:
            print(f"[{n}/{len(cells)}] skipped: {cell.describe()}")
            continue
        outcome = runner.run(cell.code, session=session, count=cell.count)
        if outcome.error is not None:
            state.replay.insert(0, cell)  # it ran to its error: fix the cause, and a later replay resumes here
            sys.stderr.write(f"[{n}/{len(cells)}] {cell.describe()} failed: {outcome.error['ename']}: "
                             f"{outcome.error['evalue']}; stopped replaying (%aca_replay resumes from it)\n")
            return
    print(f"Replayed {len(cells)} cell(s).")


def offer(confirm: Callable[[], str | None], go: Callable[[], None]) -> None:
    """The notebook's replay button: the first click shows the plan and a second button that runs it."""
    import ipywidgets
    from IPython.display import display

    button = ipywidgets.Button(description="Replay earlier cells…", icon="repeat",
                               layout=ipywidgets.Layout(width="auto"),
                               tooltip="Show the cells that built the lost state, then re-run them")
    run_button = ipywidgets.Button(description="Run them", button_style="warning", icon="play",
                                   layout=ipywidgets.Layout(width="auto", display="none"))
    output = ipywidgets.Output()

    def show_plan(_: Any) -> None:
        button.disabled = True
        with output:
            text = confirm()
            print(text or "Nothing to replay.")
        if text:
            run_button.layout.display = None

    def run_plan(_: Any) -> None:
        run_button.disabled = True
        with output:
            go()

    button.on_click(show_plan)
    run_button.on_click(run_plan)
    display(ipywidgets.VBox([ipywidgets.HBox([button, run_button]), output]))
