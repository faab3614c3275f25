"""Tracebacks as IPython shows them, from the session's text: parsing a failure's stderr, colouring (no I/O).

Shared by the runner (plain-mode failures, service messages) and the presentation layer; imports neither.
"""

from __future__ import annotations

import re

__all__ = ["BOLD", "GREEN", "RED", "RESET", "colorize_traceback", "error_line", "exception_message",
           "parse_stderr_error"]

RED, GREEN, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[0m"

# --- a failure's stderr (plain mode, service messages) as an IPython-style error -------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")
_EXC_NAME = re.compile(r"(Error|Exception|Interrupt|Exit|Warning|Iteration|Timeout)$")


def parse_stderr_error(stderr: str, fallback_name: str = "RemoteError") -> tuple[str, str, list[str]]:
    """(ename, evalue, traceback lines) from a failed execution's stderr."""
    plain = _ANSI.sub("", stderr or "").rstrip()
    lines = plain.splitlines()
    ename, evalue, found = fallback_name, "", False
    for line in reversed(lines):
        if not line.strip():
            continue
        m = _ERROR_LINE.match(line.strip())
        if m and (_EXC_NAME.search(m.group(1)) or "." in m.group(1)):
            ename, evalue, found = m.group(1).rsplit(".", 1)[-1], (m.group(2) or "").strip(), True
            break
        if not evalue:
            evalue = line.strip()
        if m is None:
            break
    if not lines:
        evalue = evalue or "the remote execution failed without any message"
    if found:
        return ename, evalue, colorize_traceback(stderr.rstrip().splitlines())
    # Not a Python traceback (a service message such as a timeout): one line, plus any other text.
    rest = [line for line in lines if line.strip() and line.strip() != evalue]
    return ename, evalue, [f"{RED}{BOLD}{ename}{RESET}: {evalue}", *rest]


_CELL_REF = re.compile(r"^(\s*)((?:Cell In\s*\[\d+\]|File [^,]+|Input In \[\d+\]),.*)$")
_ARROW = re.compile(r"^(\s*)(-+>)(\s*\d+.*)$")


def colorize_traceback(lines: list[str]) -> list[str]:
    """Colour a plain-text IPython traceback the way IPython does; text already coloured is kept."""
    if any("\x1b[" in line for line in lines):
        return list(lines)
    lines = [part for line in lines for part in line.split("\n")]
    out: list[str] = []
    last_error = max((i for i, line in enumerate(lines)
                      if (m := _ERROR_LINE.match(line.strip())) and _EXC_NAME.search(m.group(1))), default=-1)
    for i, line in enumerate(lines):
        if i == last_error:
            name, sep, rest = line.partition(":")
            out.append(f"{RED}{BOLD}{name}{RESET}{sep}{rest}")
        elif m := _CELL_REF.match(line):
            out.append(f"{m.group(1)}{GREEN}{m.group(2)}{RESET}")
        elif m := _ARROW.match(line):
            out.append(f"{m.group(1)}{GREEN}{m.group(2)}{RESET}{m.group(3)}")
        elif line.startswith("-" * 20):
            out.append(f"{RED}{line}{RESET}")
        else:
            out.append(line)
    return out


def exception_message(exc: BaseException) -> str:
    """The message of ``exc`` on one line, any bearer token masked ('' when it has none)."""
    from .._exceptions import error_message

    name = type(exc).__name__
    message = error_message(exc)
    return "" if message == name else message.removeprefix(name + ": ")


def error_line(exc: BaseException) -> str:
    """``exc`` as one coloured line, ``Class: message``, the way IPython ends a traceback."""
    message = exception_message(exc)
    return f"{RED}{BOLD}{type(exc).__name__}{RESET}" + (f": {message}" if message else "")
