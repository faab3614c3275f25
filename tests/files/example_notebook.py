"""Builds ``examples/files.ipynb`` (the file magics and the browser widget): ``python -m tests.files.example_notebook``.

Generated, not hand-edited, so the JSON stays valid and diffs stay readable; ``test_example.py`` checks that the
committed notebook is what this writes, and runs it on the ACA Sessions kernel against a local pool.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

PATH = Path(__file__).resolve().parents[2] / "examples" / "files.ipynb"

ACA_KERNEL = {"name": "aca_sessions", "display_name": "ACA Sessions", "language": "python"}
LANGUAGE_INFO = {"name": "python", "file_extension": ".py", "mimetype": "text/x-python"}


def build() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Files in `/mnt/data`\n\n"
            "A session has its own disk: `/mnt/data`. The file magics move files between this machine (where the "
            "kernel runs) and the session; `%aca_files` shows a browser widget for the same operations. All of "
            "them take `--session NAME` for a named session."
        ),
        new_markdown_cell("Make a small CSV on this machine (`%%local` runs a cell here, not in the session)."),
        new_code_cell(
            "%%local\n"
            "rows = [(\"Oslo\", 4.5), (\"Lisbon\", 17.2), (\"Nairobi\", 19.8), (\"Lima\", 18.1)]\n"
            "with open(\"cities.csv\", \"w\") as f:\n"
            "    f.write(\"city,temp_c\\n\")\n"
            "    f.writelines(f\"{city},{temp}\\n\" for city, temp in rows)"
        ),
        new_markdown_cell(
            "Upload it, then list the session's files. Transfers show a progress bar; files of up to 128 MB are "
            "accepted. `%aca_upload LOCAL REMOTE` picks another name (a name ending in `/` is a folder, on api "
            "versions with folders)."
        ),
        new_code_cell("%aca_upload cities.csv"),
        new_code_cell("%aca_ls"),
        new_markdown_cell("The file is now in the session, where the code of the other cells runs."),
        new_code_cell(
            "import csv\nimport json\n\n"
            "with open(\"/mnt/data/cities.csv\") as f:\n"
            "    temps = {row[\"city\"]: float(row[\"temp_c\"]) for row in csv.DictReader(f)}\n"
            "summary = {\"warmest\": max(temps, key=temps.get), \"mean\": round(sum(temps.values()) / len(temps), 2)}\n"
            "with open(\"/mnt/data/summary.json\", \"w\") as f:\n"
            "    json.dump(summary, f)\n"
            "summary"
        ),
        new_markdown_cell("Download the result next to this notebook (or `%aca_download REMOTE FOLDER_OR_NAME`)."),
        new_code_cell("%aca_download summary.json"),
        new_code_cell("%%local\nprint(open(\"summary.json\").read())"),
        new_markdown_cell(
            "## The file browser\n\n"
            "`%aca_files` shows the session's files as a table: click a column to sort, a name to preview it "
            "(images, and the first 64 KB of text, CSV and JSON), a folder to open it. Under the table: a browser "
            "download link (files up to 20 MB), *Save to kernel* into a folder on this machine, *Delete* (with a "
            "confirmation), and uploads from the browser or from a path on this machine. Transfers run in the "
            "background, so the notebook stays responsive."
        ),
        new_code_cell("%aca_files"),
        new_markdown_cell(
            "In a plain Python kernel the same widget takes a client:\n\n"
            "```python\n"
            "from aca_kernel import SessionsClient\n"
            "from aca_kernel.widgets import FileBrowser\n\n"
            "FileBrowser(client=SessionsClient(endpoint, credential))\n"
            "```\n\n"
            "Clean up:"
        ),
        new_code_cell("%aca_rm cities.csv summary.json"),
    ]
    nb = new_notebook(cells=cells, metadata={"kernelspec": ACA_KERNEL, "language_info": LANGUAGE_INFO})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids keep regenerated notebooks diff-free
    return nb


def write(path: Path = PATH) -> Path:
    nbformat.write(build(), path)
    return path


if __name__ == "__main__":
    print(f"wrote {write()}")
