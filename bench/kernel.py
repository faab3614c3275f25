"""The kernel path, cell by cell: every way to run a trivial cell, measured in one run, rounds interleaved.

    python bench/kernel.py [-n 200] [--code "1"]

Paths (all on the same private local pool and the same machine):

* ``stock``      jupyter_client -> a stock ipykernel (python3)
* ``raw-http``   httpx POST code/execute of the same code to the pool (no client library)
* ``client``     SessionsClient.execute of the same code
* ``aca-rich``   jupyter_client -> the ACA Sessions kernel (the default, rich mode)
* ``aca-plain``  jupyter_client -> the ACA Sessions kernel with rich=false
* ``magic``      jupyter_client -> a stock ipykernel running ``%%aca`` + the code
* ``runtime``    SessionsClient.execute of the runtime's call for the code (what aca-rich sends)

One Jupyter hop plus one HTTP hop is the floor: ``stock + raw-http`` (p50 of each). The kernel may add nothing to
it: ``aca-rich / floor`` is the figure to watch. ``runtime - client`` is what the runtime costs inside the session.
Each round runs one cell on every path, in turn, so that machine noise hits all paths alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable

from _common import private_environment


def percentile(samples: list[float], q: float) -> float:
    ms = sorted(s * 1000 for s in samples)
    return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]


def kernel(name: str, env: dict[str, str] | None = None):
    from jupyter_client.manager import start_new_kernel

    return start_new_kernel(kernel_name=name, env={**os.environ, **(env or {})})


def cell_runner(kc, code: str) -> Callable[[], None]:
    def run() -> None:
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="rounds (cells per path; default 200)")
    parser.add_argument("--code", default="1", help="the cell (default: 1)")
    parser.add_argument("--plot", metavar="PNG", help="also draw p50 and p95 per path into this image")
    args = parser.parse_args(argv)

    with private_environment():
        import httpx

        from aca_kernel import SessionsClient
        from aca_kernel._localpool import ensure_local_pool
        from aca_kernel.notebook import _runtime

        pool = ensure_local_pool()
        env = {"ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
               "ACA_PROGRESS_AFTER": "600"}
        kernels = {"stock": kernel("python3"), "aca-rich": kernel("aca_sessions", env),
                   "aca-plain": kernel("aca_sessions", {**env, "ACA_RICH": "false"}),
                   "magic": kernel("python3", env)}
        cell_runner(kernels["magic"][1], "%load_ext aca_sessions")()
        client = SessionsClient(pool.endpoint, pool.token)
        raw = httpx.Client(headers={"Authorization": f"Bearer {pool.token}"})
        raw_id = str(uuid.uuid4())
        raw_url = f"{pool.endpoint.rstrip('/')}/code/execute?api-version=2024-02-02-preview&identifier={raw_id}"
        rt = SessionsClient(pool.endpoint, pool.token)
        rt.execute(_runtime.cell_code("0", count=1, install=True))
        counter = iter(range(2, 10**9))

        def raw_http() -> None:
            r = raw.post(raw_url, json={"properties": {"codeInputType": "inline", "executionType": "synchronous",
                                                       "code": args.code}})
            assert r.status_code == 200 and r.json()["properties"]["status"] == "Success", r.text

        def runtime() -> None:
            result = rt.execute(_runtime.cell_code(args.code, count=next(counter)))
            assert _runtime.parse_envelope(result.result) is not None

        paths: dict[str, Callable[[], None]] = {
            "stock": cell_runner(kernels["stock"][1], args.code),
            "raw-http": raw_http,
            "client": lambda: client.execute(args.code),
            "runtime": runtime,
            "aca-rich": cell_runner(kernels["aca-rich"][1], args.code),
            "aca-plain": cell_runner(kernels["aca-plain"][1], args.code),
            "magic": cell_runner(kernels["magic"][1], "%%aca\n" + args.code),
        }
        try:
            for run in paths.values():  # warm-up: sessions, runtimes, connections
                for _ in range(5):
                    run()
            samples: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.n):
                for name, run in paths.items():
                    start = time.perf_counter()
                    run()
                    samples[name].append(time.perf_counter() - start)
        finally:
            for km, kc in kernels.values():
                kc.stop_channels()
                km.shutdown_kernel(now=True)
            client.close()
            rt.close()
            raw.close()

    print(f"{'path':10} {'p50 ms':>8} {'p95 ms':>8}   (n={args.n} rounds, cell {args.code!r})")
    for name, s in samples.items():
        print(f"{name:10} {percentile(s, 0.5):8.2f} {percentile(s, 0.95):8.2f}")
    p50 = {name: statistics.median(s) * 1000 for name, s in samples.items()}
    floor = p50["stock"] + p50["raw-http"]
    print(f"floor (stock + raw-http p50): {floor:.2f} ms")
    print(f"aca-rich / floor: {p50['aca-rich'] / floor:.2f}   aca-plain / floor: {p50['aca-plain'] / floor:.2f}   "
          f"magic / floor: {p50['magic'] / floor:.2f}")
    print(f"runtime work in the session (runtime - client, p50): {p50['runtime'] - p50['client']:.2f} ms")
    if args.plot:
        plot(samples, floor, args.plot, args.n)
    return 0


def plot(samples: dict[str, list[float]], floor: float, path: str, rounds: int) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    names = list(samples)
    p50 = [percentile(samples[n], 0.5) for n in names]
    p95 = [percentile(samples[n], 0.95) for n in names]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(names, p95, color="#c7dcef", label="p95")
    ax.barh(names, p50, color="#0078d4", label="p50")
    ax.axvline(floor, color="#d13438", linestyle="--", label=f"floor: stock + raw-http p50 ({floor:.1f} ms)")
    ax.invert_yaxis()
    ax.set_xlabel("ms per trivial cell")
    ax.set_title(f"One cell, every path ({rounds} rounds, interleaved)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
