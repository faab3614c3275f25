"""The local pool's own limits: what it reads, what it keeps, and how many sessions its descriptors allow.

Every number a guarantee in docs/reliability.md rests on is here. The service's own limits (128 MB uploads,
220 s executions, 4096-character v2 streams) stay where the protocol is implemented.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from dataclasses import dataclass

__all__ = [
    "FDS_PER_KERNEL",
    "MAX_JSON_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_STREAM_CHARS",
    "MAX_UPLOAD_PARTS",
    "DescriptorBudget",
    "human_size",
    "open_descriptors",
    "raise_open_file_limit",
]

logger = logging.getLogger("aca_kernel.emulator")

# A JSON request body (an execution) over this is refused with 413 before it is parsed: parsing costs about
# three times the body in memory.
MAX_JSON_BODY_BYTES = 32 << 20
# One message from a session kernel (an output, the value of the last expression). libzmq drops a bigger one
# before buffering it, so code in a session cannot make the pool allocate more for one message.
MAX_MESSAGE_BYTES = 32 << 20
# Characters of stdout and of stderr kept per execution; what follows is dropped, and a note says so.
MAX_STREAM_CHARS = 16 << 20
# Files in one multipart upload; each is staged to disk as it arrives, one open file at a time.
MAX_UPLOAD_PARTS = 1000
# Descriptors one live session kernel holds in the pool (measured: 6 with the shared ZMQ context, plus room for
# a kernel being restarted next to it); tests/reliability/test_descriptors.py keeps this honest.
FDS_PER_KERNEL = 12
# Descriptors kept free for connections, uploads and downloads in flight, at least.
_MIN_RESERVE = 64


def human_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (the common soft default, 1024, caps a pool at ~70
    sessions); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # e.g. a hard limit above the kernel's nr_open
        logger.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def open_descriptors() -> int:
    """How many descriptors this process holds now."""
    with contextlib.suppress(OSError):
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself opened
    return 0


@dataclass(frozen=True)
class DescriptorBudget:
    """How many session kernels the open-file limit leaves room for.

    ``capacity`` is fixed at start (the limit, minus what the pool holds before any kernel, minus a reserve for
    connections and transfers), so that a session admitted once can always start its kernel; ``room_for_kernel``
    is the live check made before each kernel start, for what the static count cannot see.
    """

    limit: int
    baseline: int
    reserve: int

    @classmethod
    def measure(cls, limit: int | None = None) -> DescriptorBudget:
        limit = limit if limit is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit == resource.RLIM_INFINITY:
            limit = 1 << 20
        return cls(limit=limit, baseline=open_descriptors(), reserve=max(_MIN_RESERVE, limit // 16))

    @property
    def kernels(self) -> int:
        """Session kernels (pre-started ones included) the limit leaves room for."""
        return max(0, (self.limit - self.baseline - self.reserve) // FDS_PER_KERNEL)

    def room_for_kernel(self) -> bool:
        return open_descriptors() + FDS_PER_KERNEL <= self.limit - self.reserve // 2
