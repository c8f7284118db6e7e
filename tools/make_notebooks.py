"""Generate notebooks/*.ipynb from their readable sources notebooks/src/*.py, and execute them.

Sources use the "percent" cell format, one file per notebook:

    # %% [markdown] id=title
    # # Pretrain one configuration
    # %% id=parameters tags=parameters
    config: str = "experiments/configs/lab.yaml"  # preset

Each `# %%` line opens a cell: `[markdown]` for a markdown cell (its lines lose the leading
`# `), `id=` a stable cell id (required, unique per notebook), `tags=` comma-separated tags.

    python tools/make_notebooks.py              # regenerate, execute (CI=true: SMOKE), save
    python tools/make_notebooks.py --no-execute # regenerate without outputs
    python tools/make_notebooks.py --check      # committed notebooks match their sources?
    python tools/make_notebooks.py 01_pretrain  # only the notebooks whose names start so

`make notebooks` runs the first form: the one way to refresh committed outputs. Outputs are
those of the SMOKE settings (CI=true), as nbval in `make test` re-creates them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SRC_DIR = NB_DIR / "src"
MAX_BYTES = 1_000_000
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
_HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?P<rest>.*)$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SourceError(ValueError):
    """A malformed notebook source; the message names the file and line."""


def parse_source(path: Path) -> list[dict]:
    """A percent-format source -> [{cell_type, id, tags, source}]."""
    cells: list[dict] = []
    current = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            attrs = dict(tok.split("=", 1) for tok in m["rest"].split() if "=" in tok)
            cid = attrs.get("id", "")
            if not _ID.match(cid):
                raise SourceError(f"{path}:{n}: cell needs id=<letters, digits, - or _>")
            if any(c["id"] == cid for c in cells):
                raise SourceError(f"{path}:{n}: duplicate cell id '{cid}'")
            tags = [t for t in attrs.get("tags", "").split(",") if t]
            current = {"cell_type": "markdown" if m["md"] else "code", "id": cid, "tags": tags,
                       "lines": []}
            cells.append(current)
            continue
        if current is None:
            continue  # the source's docstring and comments above the first cell
        if current["cell_type"] == "markdown":
            if line.strip() and not line.startswith("#"):
                raise SourceError(f"{path}:{n}: markdown lines must start with '#'")
            line = line[2:] if line.startswith("# ") else line[1:]
        current["lines"].append(line)
    for c in cells:
        if "parameters" in c["tags"]:
            for line in c["lines"]:
                # papermill reads a parameter per line with exactly one "=" (comments included)
                if line.strip() and not line.lstrip().startswith("#") and line.count("=") != 1:
                    raise SourceError(f"{path}: parameters cell: '{line}' must hold exactly one "
                                      "'=' (papermill cannot parse it otherwise)")
        lines = c.pop("lines")
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        c["source"] = "\n".join(lines)
    return cells


def build(path: Path) -> nbformat.NotebookNode:
    """The notebook of one source, without outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    for c in parse_source(path):
        meta = {"tags": c["tags"]} if c["tags"] else {}
        if c["cell_type"] == "markdown":
            cell = nbformat.v4.new_markdown_cell(c["source"], metadata=meta)
        else:
            cell = nbformat.v4.new_code_cell(c["source"], metadata=meta)
        cell["id"] = c["id"]
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def sources(prefixes: list[str] | None = None) -> list[Path]:
    found = sorted(SRC_DIR.glob("[0-9][0-9]_*.py"))
    if prefixes:
        found = [p for p in found if any(p.stem.startswith(x) for x in prefixes)]
    return found


def execute(nb: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    """Run top to bottom in a fresh python3 kernel, cwd notebooks/, as nbval does, with CI=true
    (SMOKE), and keep only the checked outputs (no timings, no widget state)."""
    from nbclient import NotebookClient
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


def check(paths: list[Path]) -> list[str]:
    """Differences between the committed notebooks and their sources (empty = in sync)."""
    problems = []
    for src in paths:
        target = NB_DIR / f"{src.stem}.ipynb"
        if not target.exists():
            problems.append(f"{target.relative_to(ROOT)}: missing (run `make notebooks`)")
            continue
        want = build(src)
        have = nbformat.read(target, as_version=4)
        if have.metadata.get("kernelspec", {}).get("name") != "python3":
            problems.append(f"{target.name}: kernelspec is not python3")
        if len(want.cells) != len(have.cells):
            problems.append(f"{target.name}: {len(have.cells)} cells, source has {len(want.cells)}")
            continue
        for w, h in zip(want.cells, have.cells):
            for key in ("cell_type", "id", "source"):
                if w.get(key) != h.get(key):
                    problems.append(f"{target.name}: cell {w['id']}: {key} differs from "
                                    f"{src.relative_to(ROOT)}")
                    break
            else:
                if w.metadata.get("tags", []) != h.metadata.get("tags", []):
                    problems.append(f"{target.name}: cell {w['id']}: tags differ")
        size = target.stat().st_size
        if size >= MAX_BYTES:
            problems.append(f"{target.name}: {size} bytes (limit {MAX_BYTES})")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("only", nargs="*", help="notebook name prefixes (default: all)")
    p.add_argument("--no-execute", action="store_true", help="write without outputs")
    p.add_argument("--check", action="store_true", help="compare committed notebooks to sources")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = p.parse_args(argv)
    paths = sources(args.only)
    if not paths:
        print(f"error: no notebook sources in {SRC_DIR} match {args.only}", file=sys.stderr)
        return 2
    if args.check:
        problems = check(paths)
        for line in problems:
            print(line)
        return 1 if problems else 0
    for src in paths:
        target = NB_DIR / f"{src.stem}.ipynb"
        nb = build(src)
        t0 = time.perf_counter()
        if not args.no_execute:
            nb = execute(nb, args.timeout)
        nbformat.write(nb, target)
        size = target.stat().st_size
        took = f" executed in {time.perf_counter() - t0:.0f} s," if not args.no_execute else ""
        print(f"{target.relative_to(ROOT)}:{took} {size / 1e3:.0f} kB")
        if size >= MAX_BYTES:
            print(f"error: {target.name} is {size} bytes; notebooks must stay under 1 MB "
                  "(smaller figures, fewer points)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
