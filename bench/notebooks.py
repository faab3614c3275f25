"""Real notebooks as the yardstick: run each on a stock ipykernel and on ACA Sessions, compare cell by cell.

    python bench/notebooks.py NOTEBOOK.ipynb [...] [--timeout 120] [--show-diffs]

Each notebook runs through nbclient (errors allowed, as a reader would run it) twice on the stock ``python3``
kernel in a copy of its folder, and once on the ACA Sessions kernel on a private local pool, with the folder
uploaded to its session first. Cells whose outputs differ between the two local runs (unseeded randomness,
timings) are counted apart: no kernel can match them. A cell counts as equal
when its outputs match after the normalising of tests/kernel/test_parity.py (memory addresses, timings,
temporary cell file names, the working and home directories); images are compared by type only. The notebooks
are not part of this repository: point the script at any you have (a public collection is the best test).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from _common import private_environment

_IMAGES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the parity tests' normaliser

from tests.kernel.normalise import normalise  # noqa: E402


def summary(outputs: list, cwd: str) -> list:
    items: list = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text = "".join(ln for ln in out["text"].splitlines(keepends=True)
                           if not ln.startswith("running on the local session pool"))  # said once, by design
            if not text:
                continue
            out = {**out, "text": text}
            if items and items[-1][:2] == ["stream", out["name"]]:
                items[-1][2] += out["text"]
            else:
                items.append(["stream", out["name"], out["text"]])
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            text = {m: v for m, v in data.items() if m not in _IMAGES and isinstance(v, str)}
            items.append([kind, sorted(data), normalise(json.dumps(text, sort_keys=True), cwd)])
        elif kind == "error":
            items.append(["error", out["ename"], normalise(out["evalue"], cwd)])
    return [[normalise(x, cwd) if isinstance(x, str) else x for x in item] for item in items]


def upload_folder(folder: Path, session: str) -> None:
    from aca_kernel import SessionsClient
    from aca_kernel._folders import upload_tree, walk_local
    from aca_kernel._localpool import ensure_local_pool

    pool = ensure_local_pool()
    files = [f for f in walk_local(folder) if not f.rel.endswith(".ipynb")]
    with SessionsClient(pool.endpoint, pool.token, session_id=session) as client:
        upload_tree(client, files, "")


def run(path: Path, kernel: str, workdir: Path, timeout: int) -> object:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=timeout, allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=120, help="seconds per cell")
    parser.add_argument("--show-diffs", action="store_true")
    args = parser.parse_args(argv)
    total = equal = noise = 0
    with private_environment():
        for path in args.notebooks:
            work = Path(tempfile.mkdtemp(prefix="nb-"))
            shutil.copytree(path.parent, work, dirs_exist_ok=True)
            try:
                stock = run(path, "python3", work, args.timeout)
                again = run(path, "python3", work, args.timeout)  # what differs between two local runs
                # The notebook's folder goes to the session first, as a user would upload it (the one difference).
                os.environ["ACA_SESSION_ID"] = session = str(uuid.uuid4())
                upload_folder(path.parent, session)
                aca = run(path, "aca_sessions", work, args.timeout)
            except Exception as exc:
                print(f"{path.name}: could not run ({type(exc).__name__}: {exc})")
                continue
            finally:
                shutil.rmtree(work, ignore_errors=True)
            cells = [(a, b, c) for a, b, c in zip(stock.cells, again.cells, aca.cells, strict=True)
                     if a.cell_type == "code"]
            same = varying = 0
            for a, b, c in cells:
                left, twice, right = (summary(x.outputs, str(work)) for x in (a, b, c))
                if left != twice:
                    varying += 1  # unseeded randomness, timings: no kernel can match these
                elif left == right:
                    same += 1
                elif args.show_diffs:
                    print(f"--- {path.name}: {a.source[:80]!r}\n  stock: {str(left)[:400]}\n  aca:   {str(right)[:400]}")
            total, equal, noise = total + len(cells) - varying, equal + same, noise + varying
            print(f"{path.name}: {same}/{len(cells) - varying} code cells equal ({varying} differ between two local runs)")
    print(f"in all: {equal}/{total} code cells equal; {noise} more differ between two local runs and are not counted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
