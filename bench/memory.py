"""Memory over many cells: the session, the local pool and the kernel, before and after.

    python bench/memory.py [--cells 3000] [--image-cells 300] [--image-mb 1]

An ACA Sessions kernel on a private local pool runs ``--cells`` trivial cells (``x = 1`` then ``x``, alternating)
and then ``--image-cells`` cells that each display a ``--image-mb`` MB image, as a plotting notebook does. The
resident memory (VmRSS) of the session's kernel, of the pool process and of the local kernel is read after a
warm-up, after the trivial cells and after the image cells; a stock ipykernel runs the same cells for
comparison. A flat line is the goal: the session and the pool
keep nothing per cell beyond what the user's own code keeps (IPython's own ``In``/``Out`` of the user's cells).
"""

from __future__ import annotations

import argparse
import os
import sys

from _common import private_environment

_RSS = "int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024"


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) // 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--image-cells", type=int, default=300)
    parser.add_argument("--image-mb", type=float, default=1.0)
    args = parser.parse_args(argv)
    with private_environment():
        from jupyter_client.manager import start_new_kernel

        from aca_kernel._localpool import ensure_local_pool

        pool = ensure_local_pool()
        env = {**os.environ, "ACA_POOL_MANAGEMENT_ENDPOINT": pool.endpoint, "ACA_TOKEN": pool.token or "",
               "ACA_PROGRESS_AFTER": "600"}
        km, kc = start_new_kernel(kernel_name="aca_sessions", env=env)
        skm, skc = start_new_kernel(kernel_name="python3")  # the same cells locally: the baseline

        def run(code: str, client=None) -> dict:
            values: list[str] = []

            def hook(msg: dict) -> None:
                if msg["msg_type"] == "execute_result":
                    values.append(msg["content"]["data"]["text/plain"])

            reply = (client or kc).execute_interactive(code, timeout=120, output_hook=hook)
            assert reply["content"]["status"] == "ok", reply["content"]
            return {"value": values[-1] if values else None}

        def both(code: str) -> None:
            run(code)
            run(code, skc)

        def snapshot(label: str) -> tuple[str, int, int, int, int]:
            session = int(run(_RSS)["value"])
            return (label, session, rss_mb(pool.pid), rss_mb(km.provisioner.process.pid),
                    rss_mb(skm.provisioner.process.pid))

        try:
            for i in range(50):
                both("x" if i % 2 else "x = 1")
            rows = [snapshot("after 50 warm-up cells")]
            for i in range(args.cells):
                both("x" if i % 2 else "x = 1")
            rows.append(snapshot(f"after {args.cells} trivial cells"))
            size = int(args.image_mb * (1 << 20))
            both(f"import os\nfrom IPython.display import Image, display\nblob = os.urandom({size})")
            rows.append(snapshot("with the image bytes made"))
            for _ in range(args.image_cells):
                both("display(Image(data=blob, format='png'))")
            rows.append(snapshot(f"after {args.image_cells} cells of {args.image_mb:g} MB images"))
        finally:
            for client, manager in ((kc, km), (skc, skm)):
                client.stop_channels()
                manager.shutdown_kernel(now=True)
    print(f"{'':40} {'session MB':>10} {'pool MB':>8} {'kernel MB':>9} {'stock kernel MB':>15}")
    for label, *mb in rows:
        print(f"{label:40} {mb[0]:>10} {mb[1]:>8} {mb[2]:>9} {mb[3]:>15}")
    first, trivial, made, images = rows
    for name, a, b in (("trivial cells", first, trivial), ("image cells", made, images)):
        print(f"{name + ':':15} session {b[1] - a[1]:+d} MB, pool {b[2] - a[2]:+d} MB, kernel {b[3] - a[3]:+d} MB, "
              f"stock kernel {b[4] - a[4]:+d} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
