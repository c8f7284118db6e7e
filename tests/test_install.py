"""A pip user's first session: the wheel carries the presets, grids, searches and notebooks, and
from an empty folder `plaml-lab demo`, `plaml-lab sweep` and `plaml-lab eval` work.

The wheel is built from a copy of the source (the checkout gets no build/ folder) and installed
with --no-index --no-deps into a fresh venv that sees this interpreter's packages (torch is
reused, nothing is downloaded); PYTHONPATH is dropped so that only the installed copy of
plaml_lab can be imported."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# what a wheel is built from (pyproject.toml names README.md; setup.py copies the rest)
SOURCE = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "plaml_lab",
          "experiments/configs", "experiments/grids", "experiments/searches", "notebooks"]
# a small data budget for every run, so the test takes about a minute
SMALL = ["run.num_threads=1", "data.num_train=256", "data.num_val=128", "eval.max_train=256",
         "eval.max_val=128"]


def _run(cmd: list, cwd: Path, env: dict, timeout: int = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory, root):
    """(venv bin folder, environment) of a fresh venv holding only the built wheel."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    for rel in SOURCE:
        p = root / rel
        if p.is_dir():
            shutil.copytree(p, src / rel, ignore=shutil.ignore_patterns(
                "__pycache__", ".ipynb_checkpoints"))
        else:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
          "--no-build-isolation", str(src), "-w", tmp / "wheel"], tmp, env)
    wheel = next((tmp / "wheel").glob("plaml_lab-*.whl"))

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], tmp, env)
    py = venv / "bin" / "python"
    # this interpreter's site-packages (torch, papermill, ...) after the venv's own: a plain
    # path line, so their .pth files (an editable plaml_lab) are not processed
    purelib = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   tmp, env).strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "_reuse_parent_env.pth").write_text("\n".join(sorted(ours)) + "\n")
    _run([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", wheel], tmp, env)
    return venv / "bin", env


def test_the_wheel_ships_presets_grids_searches_and_notebooks_and_its_deps_import(installed, tmp_path):
    bin_dir, env = installed
    out = _run([bin_dir / "python", "-c", textwrap.dedent("""
        import json, ipykernel, papermill, torch, plaml_lab
        from plaml_lab import paths
        print(json.dumps({"module": plaml_lab.__file__,
                          "configs": paths.shipped_names("configs"),
                          "grids": paths.shipped_names("grids"),
                          "searches": paths.shipped_names("searches"),
                          "notebooks": paths.shipped_names("notebooks"),
                          "folder": str(paths.shipped_folder("configs"))}))
        """)], tmp_path, env)
    info = json.loads(out)
    assert info["module"].startswith(str(bin_dir.parent)), info["module"]
    assert {"demo", "lab", "quick"} <= set(info["configs"])
    assert "quick_variants" in info["grids"] and "01_pretrain" in info["notebooks"]
    assert "quick_blr_mask" in info["searches"]  # 02_ablations' default search
    assert "_shipped" in info["folder"]


def test_from_an_empty_folder_demo_sweep_and_eval_run_from_the_wheel(installed, tmp_path):
    """demo with a preset name; a two-point sweep of a grid whose preset sits next to it (the
    grid in another folder than the current one), run in the package's notebook by this venv's
    kernel; eval of the demo's run by its relative path."""
    bin_dir, env = installed
    cli = bin_dir / "plaml-lab"
    work = tmp_path / "empty"
    work.mkdir()

    _run([cli, "demo", "--config", "demo", "run.max_steps=5", *SMALL], work, env)
    run = work / "experiments" / "runs" / "demo"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "summary.json").is_file()

    grids = tmp_path / "grids"
    grids.mkdir()
    (grids / "tiny.yaml").write_text("data: {dataset: shapes}\nmodel: {img_size: 16, "
                                     "patch_size: 4, embed_dim: 32, depth: 1, num_heads: 2, "
                                     "decoder_embed_dim: 32, decoder_depth: 1, "
                                     "decoder_num_heads: 2}\noptim: {batch_size: 32}\n")
    (grids / "two.yaml").write_text(
        "config: tiny.yaml\n"
        f"overrides: [run.max_steps=2, run.progress=false, {', '.join(SMALL)}]\n"
        "points:\n  mae: [method.target=pixels, method.pseudo_labels=none]\n"
        "  dual: [method.teachers=dual]\n")
    _run([cli, "sweep", grids / "two.yaml", "--out", "sweep"], work, env)
    rows = list(csv.DictReader((work / "sweep" / "results.csv").open()))
    assert [(r["point"], r["status"]) for r in rows] == [("mae", "done"), ("dual", "done")], rows
    assert (work / "sweep" / "mae" / "01_pretrain.ipynb").is_file()

    result = json.loads(_run([cli, "eval", "--checkpoint", "experiments/runs/demo",
                              "--probes", "knn", "--no-progress"], work, env))
    assert 0 <= result["knn_top1"] <= 1
