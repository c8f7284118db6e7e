"""The notebooks: paired with notebooks/src by jupytext, well-formed for papermill and nbval, small; the
papermill CLI drives them with -p / -y; and nbval's regression check really fails when a
computed value changes. (nbval itself runs every notebook in `make test`.)"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
NAMES = ["00_method_tour", "01_pretrain", "02_ablations", "03_dashboards", "04_evaluate"]
BIN = Path(sys.executable).parent
SANITIZE = str(NB_DIR / "nbval_sanitize.cfg")


def ci_env() -> dict:
    return dict(os.environ, CI="true", PYTHONHASHSEED="0")


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


# --- form -----------------------------------------------------------------------------------

def test_the_five_notebooks_exist_each_paired_with_its_source_by_jupytext():
    """notebooks/jupytext.toml pairs NN_x.ipynb with src/NN_x.py; jupytext reads both to the
    same cells (type, source, tags), so an edit to either one without `make notebooks` fails."""
    import jupytext
    from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file

    assert [p.stem for p in NOTEBOOKS] == NAMES
    config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(NB_DIR)))
    assert "ipynb,src//py:percent" in config.formats
    for path in NOTEBOOKS:
        src = NB_DIR / "src" / f"{path.stem}.py"
        text, have = jupytext.read(src), nbformat.read(path, as_version=4)
        assert len(text.cells) == len(have.cells), path.name
        for t, h in zip(text.cells, have.cells):
            assert (t.cell_type, t.source, t.metadata.get("tags", [])) == \
                (h.cell_type, h.source, h.metadata.get("tags", [])), (path.name, h.id)


def test_sync_rewrites_a_stale_notebook_from_its_edited_source_keeping_cell_ids(tmp_path):
    """What `make notebooks` relies on: `jupytext --sync` on an edited source updates the
    notebook's cell and keeps every cell id (nbval and links use them)."""
    work = tmp_path / "notebooks"
    (work / "src").mkdir(parents=True)
    (work / "jupytext.toml").write_text((NB_DIR / "jupytext.toml").read_text())
    nb_path = work / "01_pretrain.ipynb"
    nb_path.write_text((NB_DIR / "01_pretrain.ipynb").read_text())
    src = work / "src" / "01_pretrain.py"
    src.write_text((NB_DIR / "src" / "01_pretrain.py").read_text().replace(
        "knn_baseline: bool = True", "knn_baseline: bool = False"))
    before = nbformat.read(nb_path, as_version=4)
    os.utime(nb_path, (1, 1))  # the source is the newer file: its inputs win
    proc = subprocess.run([str(BIN / "jupytext"), "--sync", str(src)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    after = nbformat.read(nb_path, as_version=4)
    assert [c.id for c in after.cells] == [c.id for c in before.cells]
    params = next(c for c in after.cells if "parameters" in c.metadata.get("tags", []))
    assert "knn_baseline: bool = False" in params.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_small_executed_python3_with_stable_ids(path):
    assert path.stat().st_size < 1_000_000
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids) and all(len(i) < 40 for i in ids)
    # committed executed: every code cell ran, in order, without errors
    counts = [c.execution_count for c in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1))
    assert not [o for c in code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert any(c.outputs for c in code_cells(nb))
    assert any("NBVAL_CHECK_OUTPUT" in c.source for c in code_cells(nb))
    # outputs only where nbval compares them (docs/notebooks.md: smoke-run figures would mislead)
    assert not [c.id for c in code_cells(nb) if c.outputs and "NBVAL_CHECK_OUTPUT" not in c.source]
    assert "widgets" not in nb.metadata  # no widget state: it would bloat the file


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_well_and_takes_typed_parameters(path):
    """Title, 'What you will see', one `parameters` cell of typed literals with comments
    (config, overrides, out_dir at least) that papermill parses, SMOKE switch after it."""
    import papermill
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "**What you will see.**" in first.source
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = tagged[0]
    for stmt in ast.parse(params.source).body:
        assert isinstance(stmt, ast.AnnAssign), ast.unparse(stmt)
        ast.literal_eval(stmt.value)  # a literal, not an expression
    for line in params.source.splitlines():
        assert "  # " in line, f"no comment on: {line}"
        # papermill reads one parameter per line and splits it at '=': a second one (say in
        # the comment) breaks its parse
        assert line.count("=") == 1, f"more than one '=' on: {line}"
    found = papermill.inspect_notebook(str(path))
    assert {"config", "overrides", "out_dir"} <= set(found)
    for name, p in found.items():
        assert p["inferred_type_name"] in ("str", "list", "int", "bool", "float"), name
        assert p["help"], name
    after = nb.cells[nb.cells.index(params) + 1]
    assert 'SMOKE = "CI" in os.environ' in after.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_cells_hold_no_model_or_training_logic(path):
    """Cells call into plaml_lab; functions, classes, torch and optimisation live there."""
    nb = nbformat.read(path, as_version=4)
    for c in code_cells(nb):
        tree = ast.parse(c.source)
        for node in ast.walk(tree):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda)), c.id
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert all(m == "os" or m.startswith("plaml_lab") for m in mods), (c.id, mods)
        assert ".backward(" not in c.source and "torch." not in c.source, c.id


# --- papermill ------------------------------------------------------------------------------

def papermill(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "papermill"), *args, "--no-progress-bar"], cwd=cwd,
                          env=ci_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """01_pretrain through the papermill CLI with -p (a list as text) and -y (YAML)."""
    tmp = tmp_path_factory.mktemp("pm01")
    run_dir = tmp / "run"
    proc = papermill(["notebooks/01_pretrain.ipynb", str(tmp / "out.ipynb"),
                      "-p", "overrides", '["method.teachers=single", "mask.ratio=0.5"]',
                      "-y", f"out_dir: {run_dir}\nknn_baseline: false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_papermill_p_and_y_parameters_reach_the_01_pretrain_run(pretrained):
    cfg = yaml.safe_load((pretrained / "config.yaml").read_text())
    assert cfg["method"]["teachers"] == "single" and cfg["mask"]["ratio"] == 0.5
    assert cfg["run"]["max_steps"] == 6  # SMOKE settings under CI
    summary = json.loads((pretrained / "summary.json").read_text())
    assert summary["variant"] == "single" and summary["steps"] == 6
    out = nbformat.read(pretrained.parent / "out.ipynb", as_version=4)
    knn = next(c for c in out.cells if c.get("id") == "knn")
    text = "".join(o.get("text", "") for o in knn.outputs)
    assert "pretrained (student)" in text and "random init" not in text  # knn_baseline: false


@pytest.mark.slow
def test_papermill_p_and_y_parameters_drive_04_evaluate(pretrained, tmp_path):
    proc = papermill(["notebooks/04_evaluate.ipynb", str(tmp_path / "out.ipynb"),
                      "-p", "run", str(pretrained), "-p", "encoder", "labelling",
                      "-y", f"probes: [knn, clusters]\nout_dir: {tmp_path / 'eval'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert set(result) == {"pretrained", "random init"}
    ours = result["pretrained"]
    assert ours["checkpoint"] == str(pretrained) and ours["encoder"] == "labelling"
    assert ours["probes"] == ["knn", "clusters"] and ours["step"] == 6
    assert "knn_top1" in ours and "nmi" in ours and "linear_top1" not in ours
    assert result["random init"]["random_init"] is True
    assert (tmp_path / "eval" / "probes.png").exists()


# --- nbval ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_nbval_reports_a_changed_mask_ratio(tmp_path):
    """The committed 00_method_tour with a different mask ratio injected by papermill (outputs
    kept) fails nbval on its checked cells, naming the difference; the same notebook injected
    with its default parameters passes."""
    changed, same = tmp_path / "changed.ipynb", tmp_path / "same.ipynb"
    for target, value in ((changed, '["mask.ratio=0.5"]'), (same, "[]")):
        proc = papermill(["notebooks/00_method_tour.ipynb", str(target), "--prepare-only",
                          "-p", "overrides", value])
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-sanitize-with", SANITIZE, "-rf", "--rootdir", str(tmp_path), "changed.ipynb",
         "same.ipynb"],
        cwd=tmp_path, env=ci_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED")]
    assert failed and all(ln.startswith("FAILED changed.ipynb::") for ln in failed), out[-3000:]
    assert "3 failed" in out  # the three checked cells of changed.ipynb; same.ipynb passes
    # nbval shows the committed text and the newly computed one
    assert "12 of 16 data tokens hidden" in out and "8 of 16 data tokens hidden" in out
    assert "mask.ratio=0.5" in out


def test_the_config_summary_shows_a_teacher_schedule_given_as_windows():
    """describe_config (01_pretrain's checked output) prints what the run uses: a window in place
    of momentum when teachers.<role>.window is set, the momenta otherwise."""
    from plaml_lab.config import load_config
    from plaml_lab.notebook.display import describe_config

    line = describe_config(load_config(None, ["teachers.labelling.window=0.1",
                                              "teachers.reconstruction.window_end=0.5"])).splitlines()[1]
    assert "labelling momentum window 0.1 of the run -> 1.0" in line
    assert "reconstruction 0.999 -> window 0.5" in line


def test_checked_cells_show_a_measured_number_only_as_off_finite_or_not():
    """What 01/02/04 print for nbval: the same text for two CPU classes' values of a loss
    (3.029 vs 3.024), distinct text for a term that is off (0) and for a NaN, and the values
    themselves where coarse is not asked for."""
    from plaml_lab.notebook.display import comparison, metrics_text, table

    avx2, avx512 = {"loss_cls": 3.029, "steps": 6}, {"loss_cls": 3.024, "steps": 6}
    shown = [metrics_text(r, ["steps", "loss_cls"], coarse_keys=["loss_cls"])
             for r in (avx2, avx512)]
    assert shown[0] == shown[1] == "steps          6\nloss_cls       finite"
    rows = [{"point": "mae", "loss_cls": 0.0}, {"point": "bad", "loss_cls": float("nan")}]
    lines = table(rows, ["loss_cls"], first="point", coarse_keys=["loss_cls"]).splitlines()
    assert [ln.split() for ln in lines[1:]] == [["mae", "0"], ["bad", "nan"]]
    assert "3.029" in metrics_text(avx2, ["loss_cls"])
    both = {"pretrained": {"knn_top1": 0.25}, "random init": {"knn_top1": 0.2}}
    assert comparison(both, ["knn_top1"], coarse_values=True).splitlines() == [
        "metric    pretrained  random init", "knn_top1      finite       finite"]


def test_plaml_smoke_precision_sets_the_precision_of_every_smoke_run(monkeypatch):
    """How CI runs the notebooks in bf16 on a CPU where auto means fp32
    (tools/test_other_class.sh): the SMOKE settings carry run.precision from the variable."""
    from plaml_lab.config import load_config
    from plaml_lab.notebook.params import settings

    monkeypatch.delenv("PLAML_SMOKE_PRECISION", raising=False)
    assert load_config(*settings("", [], True)).run.precision == "auto"
    monkeypatch.setenv("PLAML_SMOKE_PRECISION", "bf16")
    path, overrides = settings("", ["mask.ratio=0.5"], True)
    cfg = load_config(path, overrides)
    assert (cfg.run.precision, cfg.mask.ratio) == ("bf16", 0.5)


def test_02s_smoke_search_keeps_the_searched_keys_and_cuts_only_the_budget():
    """02_ablations under CI runs a copy of its search file: the same keys and ranges, 3 trials of
    the SMOKE run scored on the final loss, no pruner (6 steps log no kNN to prune on)."""
    from plaml_lab.lab.search_file import load_search
    from plaml_lab.notebook.params import search_file

    name = "experiments/searches/quick_blr_mask.yaml"
    full, smoke = load_search(search_file(name, False)), load_search(search_file(name, True))
    assert [(p.key, p.corners()) for p in smoke.params] == \
        [(p.key, p.corners()) for p in full.params]
    assert (smoke.trials, smoke.metric, smoke.direction, smoke.pruner) == \
        (3, "loss", "minimize", None)
    assert "run.max_steps=6" in smoke.overrides and smoke.config.name == "quick.yaml"
    assert (full.trials, full.metric) == (12, "knn_top1")
