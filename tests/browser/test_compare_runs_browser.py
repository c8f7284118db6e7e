"""The compare-runs dashboard's probe bars as Chromium draws them: metric names in words under
the bars, a y-axis title, and the ablation's random-init row as a dashed reference line rather
than a bar. Its runs are synthetic folders (tests/fake_runs.py): no training, no torch model."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import pagetools as pt
from fake_runs import write_compare_folder
from test_dashboards_browser import (ACTION_MS, RUN_ALL_S, STEP_MS, diagnose, save_small_png,
                                     screenshot, wait_for, wait_for_idle_notebook)

pytestmark = pytest.mark.browser

QUICK = str(Path(__file__).resolve().parents[2] / "experiments" / "configs" / "quick.yaml")
NOTEBOOK = """\
from IPython.display import display
from plaml_lab import viz

compare_app = viz.compare_runs({folder!r}, auto_refresh=False,
                               selected=["a-s0", "a-s1", "b-s0", "random_init-s0"])
display(compare_app)
print("compare_runs shown")
"""
BARS = ".plaml-compare-runs .plaml-view-bars .js-plotly-plot"


@pytest.fixture(scope="module")
def compare_page(browser, lab_server, sign_in):
    """Runs as in tests/test_viz_compare.py (a: mask 0.75 x seeds 0, 1 with a fine-tuning;
    b: mask 0.6; random_init-s0 with kNN 0.2) and a notebook showing them; yields the page."""
    runs = lab_server.root / "compare" / "runs"
    write_compare_folder(runs, QUICK, still_training=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        NOTEBOOK.format(folder=str(runs)))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, lab_server.root / "compare" / "compare_runs.ipynb")
    context, page, errors = pt.new_page(browser, 1400, STEP_MS)
    try:
        sign_in(page, "/lab/tree/compare/compare_runs.ipynb")
        wait_for_idle_notebook(page, "/lab/tree/compare/compare_runs.ipynb")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        assert wait_for(page, """() => [...document.querySelectorAll('.jp-OutputArea-output')]
            .some(e => /compare_runs shown|Traceback/.test(e.innerText))""", None,
                        RUN_ALL_S * 1000), diagnose(page, errors)
        assert wait_for(page, "sel => document.querySelector(sel + ' .barlayer')", BARS,
                        ACTION_MS), f"no bars drawn\n{diagnose(page, errors)}"
        yield page
    finally:
        context.close()
        lab_server.shutdown_kernels()


def test_probe_bars_name_metrics_title_the_y_axis_and_draw_random_init_as_a_dashed_line(
        compare_page, artifacts):
    plot = compare_page.locator(BARS)
    ticks = pt.texts(plot, ".xtick text")
    assert "kNN top-1" in ticks and "fine-tune top-1" in ticks, f"x tick labels: {ticks}"
    raw = [t for t in ticks if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+", t)]
    assert not raw, f"raw metric keys as tick labels: {raw}"
    assert pt.texts(plot, ".ytitle") == ["score on the held-out split"], pt.texts(plot, ".ytitle")
    # one bar trace per config (a, b); random init is none of them
    assert len(pt.boxes(plot, ".barlayer .trace")) == 2, "random init drawn as a bar"
    lines = pt.dashed_paths(plot, ".shapelayer path")
    assert len(lines) == 1, f"{len(lines)} dashed reference lines (random init has one metric)"
    line = lines[0]
    knn = pt.boxes(plot, ".xtick text")[ticks.index("kNN top-1")]
    centre = (knn["left"] + knn["right"]) / 2
    assert line["left"] < centre < line["right"], "the dashed line is not over the kNN bars"
    # its height is kNN 0.2 on the y axis (read off two tick labels)
    ys = [(float(t), (b["top"] + b["bottom"]) / 2) for t, b in
          zip(pt.texts(plot, ".ytick text"), pt.boxes(plot, ".ytick text"))]
    (v0, y0), (v1, y1) = ys[0], ys[-1]
    expected = y0 + (0.2 - v0) * (y1 - y0) / (v1 - v0)
    assert abs((line["top"] + line["bottom"]) / 2 - expected) < 3, (line, ys)
    legend = plot.locator(".legend .traces", has_text="random_init-s0")
    assert pt.dashed_paths(legend, ".legendlines path"), "random init's legend is not dashed"
    save_small_png(screenshot(compare_page.locator(".plaml-compare-runs .plaml-view-bars")),
                   artifacts / "browser_fix_compare_runs_bars.png")
