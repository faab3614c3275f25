"""`jupyter console` on the ACA Sessions kernel, driven through a terminal as a user types into it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect", reason="pexpect comes with IPython on POSIX")
pytest.importorskip("jupyter_console", reason="jupyter-console is in the test extra: run make install")


def _console():
    jupyter = Path(sys.executable).with_name("jupyter")
    console = pexpect.spawn(str(jupyter), ["console", "--kernel", "aca_test", "--simple-prompt"],
                            encoding="utf-8", timeout=120, dimensions=(40, 200))
    console.expect(r"In \[1\]: ")
    return console


def test_console_runs_a_remote_cell_and_exit_ends_it():
    console = _console()
    try:
        console.sendline("print(6*7)")
        console.expect(r"\n42\r?\n")
        console.expect(r"In \[2\]: ")
        console.sendline("%aca_session")  # the cell ran in a session, not in the console's kernel
        console.expect(r"identifier \S+")
        console.expect(r"In \[3\]: ")
        # `exit` runs in the session, whose kernel must stay up: it comes back as the ask_exit payload, and
        # the console ends on it (and shuts down the kernel it started).
        console.sendline("exit")
        console.expect(pexpect.EOF, timeout=30)
    finally:
        console.close(force=True)
    assert console.exitstatus == 0, console.before


def test_ctrl_c_in_the_console_stops_the_remote_cell():
    console = _console()
    try:
        # One line: the simple prompt sends each line as a cell of its own.
        console.sendline("import time; x = 21; print('sleeping', flush=True); time.sleep(30); finished = True")
        console.expect(r"\nsleeping\r?\n")  # live output: the cell is running in the session
        console.sendintr()  # the console relays it to the kernel as an interrupt
        console.expect("KeyboardInterrupt")
        console.expect(r"In \[2\]: ")
        # Stopped there, not left running: the next cell does not wait behind the sleep, and the state is kept.
        console.sendline("print(x * 2, 'finished' in dir())")
        assert console.expect([r"\n42 False\r?\n", r"\n42 True\r?\n"]) == 0, "the sleep ran to its end"
        console.expect(r"In \[3\]: ")
        console.sendline("exit")
        console.expect(pexpect.EOF, timeout=30)
    finally:
        console.close(force=True)
