"""Execute round trip: ``SessionsClient.execute`` on the local pool vs jupyter_client on a local kernel.

    python bench/execute.py [-n 50] [--code "1"]

Both run the same code in an IPython kernel; the difference is what aca-sessions adds on the way (HTTP, JSON,
the emulator's routing and the sandbox's kernel bridge). Warm-up calls (session creation) are not counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _common import private_environment, summary, timed


def client_samples(code: str, n: int) -> list[float]:
    from aca_kernel import SessionsClient
    from aca_kernel._localpool import ensure_local_pool

    pool = ensure_local_pool()
    with SessionsClient(pool.endpoint, pool.token) as client:
        for _ in range(3):
            assert client.execute(code).succeeded
        return [timed(lambda: client.execute(code)) for _ in range(n)]


def kernel_samples(code: str, n: int) -> list[float]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        def run() -> None:
            reply = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
            assert reply["content"]["status"] == "ok"

        for _ in range(3):
            run()
        return [timed(run) for _ in range(n)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="samples per path (default 50)")
    parser.add_argument("--code", default="1", help="code to execute (default: 1)")
    args = parser.parse_args(argv)
    with private_environment():
        direct = kernel_samples(args.code, args.n)
        via_client = client_samples(args.code, args.n)
    print(f"{'jupyter_client':16} {summary(direct)}")
    print(f"{'SessionsClient':16} {summary(via_client)}")
    ratio = statistics.median(via_client) / statistics.median(direct)
    print(f"ratio (median SessionsClient / median jupyter_client): {ratio:.2f}")
    print(f"added per execute: {(statistics.median(via_client) - statistics.median(direct)) * 1000:.2f} ms (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
