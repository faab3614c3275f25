"""The SessionsClient on its own: run code, move files, get a plot back.

    python examples/client_demo.py [OUTPUT_DIR]

Uses $ACA_POOL_MANAGEMENT_ENDPOINT (and az login / $ACA_TOKEN) when set, else this user's local session pool.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from aca_kernel import SessionsClient


def connect() -> SessionsClient:
    if os.environ.get("ACA_POOL_MANAGEMENT_ENDPOINT"):
        return SessionsClient()  # endpoint, credential and session from ACA_* variables
    from aca_kernel._localpool import ensure_local_pool

    pool = ensure_local_pool()
    print(f"local session pool at {pool.endpoint}", file=sys.stderr)
    return SessionsClient(pool.endpoint, pool.token)


def main(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    with connect() as client:
        print(f"session {client.session_id}")

        result = client.execute("import sys, platform\nprint(platform.python_version())\n6 * 7")
        print(f"Python {result.stdout.strip()} in the session; 6 * 7 = {result.result}")

        # State persists between executions of one session.
        client.execute("counter = 1")
        print("counter + 1 =", client.execute("counter + 1").result)

        failed = client.execute("1 / 0")
        print(f"a failing cell: status={failed.status}, last line of stderr: {failed.stderr.strip().splitlines()[-1]}")

        csv = "x,y\n" + "".join(f"{i},{i * i}\n" for i in range(50))
        uploaded = client.upload_file(io.BytesIO(csv.encode()), "squares.csv")
        print(f"uploaded {uploaded.path} ({uploaded.size} bytes)")

        plot = client.execute(
            "import pandas as pd, matplotlib.pyplot as plt\n"
            "df = pd.read_csv('/mnt/data/squares.csv')\n"
            "df.describe().to_json('/mnt/data/summary.json')\n"
            "ax = df.plot(x='x', y='y', title='squares')\n"
            "plt.savefig('/mnt/data/squares.png')\n"
        )
        if not plot.succeeded:
            print(plot.stderr, file=sys.stderr)
            return 1
        if plot.image is not None:
            (out_dir / "result.png").write_bytes(plot.image.data)
            print(f"image result saved to {out_dir / 'result.png'}")

        print("files:", ", ".join(f"{f.path} ({f.size} B)" for f in client.list_files()))
        client.download_file("squares.png", out_dir / "squares.png")
        summary = json.loads(client.download_file("summary.json"))
        print(f"downloaded squares.png; mean of y = {summary['y']['mean']}")
        client.delete_file("squares.csv")
    print(f"outputs in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "output")))
