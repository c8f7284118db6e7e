"""Execute the committed notebooks top to bottom and save them with the outputs nbval checks.

    python tools/execute_notebooks.py              # every notebooks/NN_*.ipynb
    python tools/execute_notebooks.py 01_pretrain  # only those whose names start so

`make notebooks` first syncs each notebook with its source (jupytext, notebooks/jupytext.toml),
then runs this: the one way to refresh committed outputs. They are the SMOKE settings' outputs
(CI=true), which nbval in `make test` re-creates.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
MAX_BYTES = 1_000_000


def execute(nb: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    """Run in a fresh python3 kernel, cwd notebooks/, as nbval does, with CI=true (SMOKE)."""
    os.environ["CI"] = "true"  # the kernel inherits it: committed outputs are SMOKE outputs
    os.environ.setdefault("PYTHONHASHSEED", "0")
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, record_timing=False,
                            store_widget_state=False,
                            resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()
    nb.metadata.pop("widgets", None)
    return keep_checked_outputs(nb)


def keep_checked_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Outputs are committed only where nbval compares them (cells marked NBVAL_CHECK_OUTPUT):
    the rest came from the SMOKE run (a few steps of the quick preset), whose figures, plotly
    bundles and widget views (without their dropped state: "model not found") would only mislead
    a reader. Unchecked cells keep their code; nbval still runs every one."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" not in cell.source:
            cell.outputs = []  # the execution count stays: it shows the cell ran, in order
    return nb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("only", nargs="*", help="notebook name prefixes (default: all)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = p.parse_args(argv)
    paths = [q for q in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
             if not args.only or any(q.stem.startswith(x) for x in args.only)]
    if not paths:
        print(f"error: no notebook in {NB_DIR} matches {args.only}", file=sys.stderr)
        return 2
    for path in paths:
        t0 = time.perf_counter()
        nb = execute(nbformat.read(path, as_version=4), args.timeout)
        nbformat.write(nb, path)
        # the paired source is as new as its notebook: jupytext then reads inputs from either
        os.utime(NB_DIR / "src" / f"{path.stem}.py")
        size = path.stat().st_size
        print(f"{path.relative_to(ROOT)}: executed in {time.perf_counter() - t0:.0f} s, "
              f"{size / 1e3:.0f} kB")
        if size >= MAX_BYTES:
            print(f"error: {path.name} is {size} bytes; notebooks must stay under 1 MB "
                  "(smaller figures, fewer points)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
