"""What may differ between two runs of one notebook on any two kernels, removed before outputs are compared.

Memory addresses, timings (and the loop counts %timeit picks by speed), ipykernel's temporary cell file names,
the working directory (the session's is /mnt/data) and the home directory. Shared by the parity tests and
bench/notebooks.py.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["normalise"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TIMING = re.compile(r"\d+(\.\d+)?(e[+-]?\d+)?\s*(ns|µs|μs|us|ms|s)\b")


def normalise(text: str, cwd: str) -> str:
    text = _ANSI.sub("", text)
    for path in (cwd, "/mnt/data"):
        text = text.replace(path, "<cwd>")
    text = text.replace(str(Path.home()) + "/", "~/").replace("/tmp/home/", "~/")
    text = re.sub(r"0x[0-9a-f]{6,}", "0x…", text)
    text = re.sub(r"/tmp/ipykernel_\d+/\d+\.py", "<cell>", text)
    if re.search(r"CPU times|Wall time|per loop|function calls|Timer unit", text):
        text = _TIMING.sub("<t>", text)
        text = re.sub(r"[\d,]+ (run|loop)s?\b", r"N \1s", text)
    return text
