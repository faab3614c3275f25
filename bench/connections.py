"""Connections opened by an interactive notebook: cells some seconds apart, as a person runs them.

    python bench/connections.py [--cells 100] [--spacing 6]

The ACA Sessions kernel runs ``--cells`` trivial cells ``--spacing`` seconds apart on a private local pool while the
TCP connections to the pool are watched (/proc/net/tcp, every 0.2 s): each new connection has a new local port.
For comparison, a plain ``httpx.Client`` with httpx's defaults (idle connections dropped after 5 s) sends the
same requests at the same pace. On Azure each new connection is also a TLS handshake.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid

from _common import private_environment


def _ports_to(port: int) -> set[tuple[str, int]]:
    """(local address, local port) of every TCP connection (any state) whose remote port is ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    local, remote = line.split()[1:3]
                    if int(remote.rsplit(":", 1)[1], 16) == port:
                        found.add((local.rsplit(":", 1)[0], int(local.rsplit(":", 1)[1], 16)))
        except OSError:
            pass
    return found


class Watcher:
    def __init__(self, port: int) -> None:
        self.port, self.seen = port, set()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.seen |= _ports_to(self.port)

    def count(self) -> int:
        self.seen |= _ports_to(self.port)
        return len(self.seen)

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=6.0)
    args = parser.parse_args(argv)
    with private_environment():
        import httpx
        from jupyter_client.manager import start_new_kernel

        from aca_kernel._localpool import ensure_local_pool

        pool = ensure_local_pool()
        port = httpx.URL(pool.endpoint).port
        env = {**os.environ, "ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
               "ACA_PROGRESS_AFTER": "600"}
        km, kc = start_new_kernel(kernel_name="aca_sessions", env=env)
        try:
            watch = Watcher(port)
            for i in range(args.cells):
                reply = kc.execute_interactive(f"x = {i}", timeout=120, output_hook=lambda msg: None)
                assert reply["content"]["status"] == "ok", reply["content"]
                if i < args.cells - 1:
                    time.sleep(args.spacing)
            kernel_connections = watch.count()
            watch.stop()
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        time.sleep(1)
        watch = Watcher(port)
        url = f"{pool.endpoint.rstrip('/')}/code/execute?api-version=2024-02-02-preview&identifier={uuid.uuid4()}"
        with httpx.Client(headers={"Authorization": f"Bearer {pool.token}"}) as plain:  # httpx's defaults
            for i in range(args.cells):
                plain.post(url, json={"properties": {"codeInputType": "inline", "executionType": "synchronous",
                                                     "code": f"x = {i}"}}).raise_for_status()
                if i < args.cells - 1:
                    time.sleep(args.spacing)
        plain_connections = watch.count()
        watch.stop()
    print(f"{args.cells} cells {args.spacing:g} s apart: connections opened to the pool")
    print(f"  ACA Sessions kernel        {kernel_connections}")
    print(f"  httpx with its defaults    {plain_connections}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
