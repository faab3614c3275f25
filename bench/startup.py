"""Kernel start-up: the ACA Sessions kernel vs a stock ipykernel (``python3``), measured in the same run.

    python bench/startup.py [-n 7] [--first-cell]

Each sample starts a kernel with jupyter_client and waits for its kernel_info reply (what a notebook waits for
before the first cell can run), then shuts it down. Kinds alternate so drift affects both alike. The ACA kernel
does not contact the pool at start-up, so this is the cost of the kernel process alone. ``--first-cell`` also
runs ``1`` and waits for its reply: for the ACA kernel that includes allocating a session on the (already
running) local pool.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _common import private_environment, summary, timed


def start_once(kernel_name: str, first_cell: bool = False) -> float:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel_name)
    kc = None

    def start() -> None:
        nonlocal kc
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        if first_cell:
            reply = kc.execute_interactive("1", timeout=120, output_hook=lambda msg: None)
            assert reply["content"]["status"] == "ok", reply["content"]

    try:
        return timed(start)
    finally:
        if kc is not None:
            kc.stop_channels()
        km.shutdown_kernel(now=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=7, help="samples per kernel (default 7)")
    parser.add_argument("--first-cell", action="store_true", help="also wait for the first cell's reply")
    args = parser.parse_args(argv)
    with private_environment():
        if args.first_cell:
            import os

            from aca_kernel._localpool import ensure_local_pool

            pool = ensure_local_pool()  # started once, outside the timings, like a user's running pool
            os.environ.update(ACA_POOL_MANAGEMENT_ENDPOINT=pool.endpoint, ACA_TOKEN=pool.token)
        for name in ("python3", "aca_sessions"):
            start_once(name, args.first_cell)  # warm the OS file cache; not counted
        samples: dict[str, list[float]] = {"python3": [], "aca_sessions": []}
        for _ in range(args.n):
            for name in samples:
                samples[name].append(start_once(name, args.first_cell))
    for name, values in samples.items():
        print(f"{name:14} {summary(values)}")
    ratio = statistics.median(samples["aca_sessions"]) / statistics.median(samples["python3"])
    print(f"ratio (median aca_sessions / median python3): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
