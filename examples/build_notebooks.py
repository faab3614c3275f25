"""Write the example notebooks (valid nbformat 4, no outputs): ``python examples/build_notebooks.py``.

The notebooks are generated rather than hand-edited so their JSON stays valid and diffs stay readable.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

ACA_KERNEL = {"name": "aca_sessions", "display_name": "ACA Sessions", "language": "python"}
PY_KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
LANGUAGE_INFO = {"name": "python", "file_extension": ".py", "mimetype": "text/x-python"}


def notebook(kernelspec: dict, cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells, metadata={"kernelspec": kernelspec, "language_info": LANGUAGE_INFO})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids keep regenerated notebooks diff-free
    return nb


def quickstart() -> nbformat.NotebookNode:
    return notebook(ACA_KERNEL, [
        new_markdown_cell(
            "# Quickstart: the ACA Sessions kernel\n\n"
            "Every cell of this notebook runs in an Azure Container Apps dynamic session: a remote, sandboxed "
            "IPython interpreter. With no `ACA_POOL_MANAGEMENT_ENDPOINT` set, the kernel uses your local session "
            "pool, which speaks the same REST API. Output looks as if the code ran here.\n\n"
            "**What runs where.** Every cell runs in the session, magics included (`%%time`, `%%writefile`, "
            "`%load_ext`, `!ls`). Only `%%local` cells and the kernel's own `%aca…` magics run on this machine. "
            "The one thing to remember: the session has its own files in `/mnt/data`; upload what the notebook "
            "reads (`%aca_upload`, `%aca_files`)."
        ),
        new_code_cell(
            "import os\nimport platform\n\n"
            "print(f\"Python {platform.python_version()} on {platform.system()}, working in {os.getcwd()}\")"
        ),
        new_markdown_cell("The value of the last expression is shown, and the session keeps its state between cells."),
        new_code_cell("answer = 6 * 7\nanswer"),
        new_code_cell("answer + 1"),
        new_markdown_cell("DataFrames render as tables."),
        new_code_cell(
            "import pandas as pd\n\n"
            "weather = pd.DataFrame({\n"
            "    \"city\": [\"Oslo\", \"Lisbon\", \"Nairobi\", \"Lima\", \"Osaka\"],\n"
            "    \"temp_c\": [4.5, 17.2, 19.8, 18.1, 12.6],\n"
            "    \"rain_mm\": [63, 99, 62, 1, 120],\n"
            "})\n"
            "weather"
        ),
        new_markdown_cell("Plots come back as images. Files saved under `/mnt/data` stay in the session."),
        new_code_cell(
            "import matplotlib.pyplot as plt\n\n"
            "fig, ax = plt.subplots(figsize=(6, 3))\n"
            "ax.bar(weather[\"city\"], weather[\"temp_c\"], color=\"#0078d4\")\n"
            "ax.set_ylabel(\"°C\")\n"
            "ax.set_title(\"Mean temperature\")\n"
            "fig.savefig(\"/mnt/data/temperature.png\")\n"
            "plt.show()"
        ),
        new_code_cell("sorted(name for name in os.listdir(\"/mnt/data\") if not name.startswith(\".\"))"),
    ])


def data_analysis() -> nbformat.NotebookNode:
    return notebook(ACA_KERNEL, [
        new_markdown_cell(
            "# Data analysis in a session\n\n"
            "Create a CSV on this machine, upload it to the session's `/mnt/data`, analyse it remotely with pandas "
            "and matplotlib, and download the chart and a JSON summary."
        ),
        new_markdown_cell("`%%local` runs a cell on this machine instead of in the session."),
        new_code_cell(
            "%%local\n"
            "import csv\nimport random\n\n"
            "rng = random.Random(42)\n"
            "with open(\"measurements.csv\", \"w\", newline=\"\") as f:\n"
            "    w = csv.writer(f)\n"
            "    w.writerow([\"sensor\", \"temperature\", \"humidity\"])\n"
            "    for i in range(500):\n"
            "        w.writerow([f\"s{i % 5}\", round(rng.gauss(21, 3), 2), round(rng.uniform(30, 70), 1)])\n"
            "print(\"wrote measurements.csv\")"
        ),
        new_code_cell("%aca_upload measurements.csv"),
        new_code_cell(
            "import pandas as pd\n\n"
            "df = pd.read_csv(\"/mnt/data/measurements.csv\")\n"
            "df.describe()"
        ),
        new_code_cell("df.groupby(\"sensor\")[[\"temperature\", \"humidity\"]].mean().round(2)"),
        new_code_cell(
            "import matplotlib.pyplot as plt\n\n"
            "fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))\n"
            "left.hist(df[\"temperature\"], bins=30, color=\"#0078d4\")\n"
            "left.set_title(\"temperature (°C)\")\n"
            "right.hist(df[\"humidity\"], bins=30, color=\"#50e6ff\")\n"
            "right.set_title(\"humidity (%)\")\n"
            "fig.tight_layout()\n"
            "fig.savefig(\"/mnt/data/histograms.png\", dpi=100)\n"
            "plt.show()"
        ),
        new_code_cell(
            "import json\n\n"
            "summary = {\n"
            "    \"rows\": len(df),\n"
            "    \"temperature_mean\": round(float(df[\"temperature\"].mean()), 3),\n"
            "    \"humidity_mean\": round(float(df[\"humidity\"].mean()), 3),\n"
            "    \"sensors\": sorted(df[\"sensor\"].unique().tolist()),\n"
            "}\n"
            "with open(\"/mnt/data/summary.json\", \"w\") as f:\n"
            "    json.dump(summary, f, indent=2)\n"
            "summary"
        ),
        new_code_cell("%aca_download histograms.png\n%aca_download summary.json"),
        new_code_cell(
            "%%local\n"
            "import json\nimport os\n\n"
            "print(\"histograms.png:\", os.path.getsize(\"histograms.png\"), \"bytes\")\n"
            "print(json.load(open(\"summary.json\")))"
        ),
    ])


def magic() -> nbformat.NotebookNode:
    return notebook(PY_KERNEL, [
        new_markdown_cell(
            "# `%%aca` in a regular Python kernel\n\n"
            "Load the extension, then mark the cells that should run in the session with `%%aca`. The other "
            "cells run locally as usual."
        ),
        new_code_cell("%load_ext aca_sessions"),
        new_code_cell(
            "%%aca\n"
            "import os\nimport platform\n\n"
            "print(\"remote:\", platform.python_version(), os.getcwd())\n"
            "squares = [i * i for i in range(10)]\n"
            "sum(squares)"
        ),
        new_code_cell("import os\n\nprint(\"local:\", os.getcwd())"),
        new_markdown_cell("`--out NAME` stores the remote cell's value in a local variable."),
        new_code_cell("%%aca --out remote_total\nsum(squares) * 2"),
        new_code_cell("print(\"the session computed\", remote_total)\nremote_total + 1"),
        new_code_cell(
            "%%aca\n"
            "import matplotlib.pyplot as plt\n\n"
            "plt.plot(squares, marker=\"o\")\n"
            "plt.title(\"squares, plotted in the session\")\n"
            "plt.show()"
        ),
    ])


def main() -> None:
    for name, build in (("quickstart", quickstart), ("data_analysis", data_analysis), ("magic", magic)):
        nb = build()
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote {HERE / name}.ipynb")


if __name__ == "__main__":
    main()
