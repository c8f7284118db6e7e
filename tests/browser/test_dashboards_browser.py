"""The dashboards as a user sees them: notebooks/03_dashboards.ipynb run in JupyterLab, in
Chromium, with real input events. Python-side tests cannot see a missing front-end extension, a
plotly renderer mismatch or a widget version skew; these can.

One page for the module (opening the notebook and running every cell is most of the cost); the
tests run in file order on it. Screenshots: tests/artifacts/browser/ (PLAML_BROWSER_ARTIFACTS).
"""

from __future__ import annotations

import io
import re

import pytest

try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # the `browser` fixture skips (or, under CI, fails) with the reason
    PlaywrightError = Exception

pytestmark = pytest.mark.browser

RUN_ALL_S = 240  # a fresh kernel imports torch, trains the SMOKE run, builds seven apps: ~30 s
ACTION_MS = 60_000  # limit for one kernel round trip (a re-render takes ~1 s on 2 busy cores)
STEP_MS = 15_000  # Playwright's default wait for an element that should already be there
REDRAW_GRACE_MS = 5_000  # image update after the kernel's re-render reached the browser
# app CSS class -> what must be in its DOM: controls (viz/app.py puts `plaml-<name>` on each
# control widget: the slider's handle, the <select>, <input> or <button> the user touches),
# image views (<img> with a decoded PNG) and plotly views (a drawn plotly graph)
SLIDER, SELECT, INPUT = ".widget-slider .noUi-handle", " select", " input"
APPS = {
    "mask-explorer": {"controls": [f".plaml-image{SLIDER}", f".plaml-mask-ratio{SLIDER}",
                                   f".plaml-strategy{SELECT}", f".plaml-seed{INPUT}"],
                      "images": ["figure"], "plots": []},
    "token-map-viewer": {"controls": [f".plaml-image{SLIDER}", f".plaml-layer{SELECT}",
                                      f".plaml-seed{INPUT}"],
                         "images": ["figure"], "plots": []},
    "cluster-explorer": {"controls": [f".plaml-image{SLIDER}", f".plaml-prototype{SELECT}",
                                      f".plaml-embedding{SELECT}", f".plaml-colour-by{SELECT}"],
                         "images": ["figure", "gallery"], "plots": ["usage", "embedding"]},
    "attention-viewer": {"controls": [f".plaml-image{SLIDER}", f".plaml-layer{SELECT}",
                                      f".plaml-head{SELECT}", f".plaml-student-view{SELECT}"],
                         "images": ["figure"], "plots": []},
    "training-monitor": {"controls": [f".plaml-part-loss{INPUT}", f".plaml-part-loss-rec{INPUT}",
                                      f".plaml-smoothing{SLIDER}", f".plaml-log-y{INPUT}",
                                      "button.plaml-refresh"],
                         "images": [], "plots": ["metrics"]},
    "teacher-compare": {"controls": [f".plaml-checkpoint{SELECT}", f".plaml-distance{SELECT}"],
                        "images": ["maps"], "plots": ["compare"]},
    # the runs of the SMOKE run's folder side by side: run picker, curve and smoothing
    # controls, the open-a-run buttons, and the overlaid metrics.jsonl curves
    "compare-runs": {"controls": [".plaml-runs select", f".plaml-metric{SELECT}",
                                  f".plaml-smoothing{SLIDER}", "button.plaml-refresh",
                                  f".plaml-dashboard{SELECT}", "button.plaml-open"],
                     "images": [], "plots": ["curves"]},
}


# --- helpers ------------------------------------------------------------------------------------

def app(page, name: str):
    """The dashboard's container: the live widget (the notebook also shows static snapshots,
    which are outside it)."""
    return page.locator(f".jp-OutputArea-output .plaml-{name}")


def screenshot(locator):
    """PIL image of an element as Chromium draws it."""
    from PIL import Image
    return Image.open(io.BytesIO(locator.screenshot(animations="disabled"))).convert("RGB")


def changed_fraction(a, b) -> float:
    """Fraction of pixels that differ between two screenshots (1.0 when the sizes differ)."""
    from PIL import ImageChops
    if a.size != b.size:
        return 1.0
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v else 0)
    return diff.histogram()[255] / (a.size[0] * a.size[1])


def save_small_png(img, path, max_width: int = 1000) -> None:
    """A compact copy for docs/img: at most `max_width` wide, 128-colour palette."""
    from PIL import Image
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)),
                         Image.Resampling.LANCZOS)
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def image_loaded(locator) -> bool:
    return locator.evaluate("el => el.complete && el.naturalWidth > 0 && el.src !== ''")


def diagnose(page, errors: list[str]) -> str:
    """What a failed wait reports: the browser console's errors and the notebook outputs that
    look like failures (a traceback, a widget that could not be displayed)."""
    bad = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output')]
        .map(e => e.innerText).filter(t => /Error|Traceback|Loading widget/.test(t))
        .map(t => t.slice(0, 600))""")
    return ("console errors:\n  " + "\n  ".join(errors[-10:] or ["none"])
            + "\nfailing outputs:\n  " + "\n  ".join(bad or ["none"]))


def wait_for_idle_notebook(page) -> None:
    """Until the notebook JupyterLab opened has its cells and an idle kernel."""
    page.wait_for_function(
        """() => {
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session
                      && w.sessionContext.session.kernel;
            return k && k.status === 'idle' && w.content && w.content.widgets.length > 0;
        }""", timeout=RUN_ALL_S * 1000)


def wait_for(page, condition: str, arg, timeout_ms: int) -> bool:
    """Whether the JS `condition(arg)` became true within the timeout."""
    try:
        page.wait_for_function(condition, arg=arg, timeout=timeout_ms)
        return True
    except PlaywrightError:
        return False


def new_png_shown(page, img, old_src: str) -> bool:
    """Whether an ipywidgets Image shows a new, decoded PNG (each update is a fresh blob URL).
    Asked only after the kernel has re-rendered: its image update is already on its way then
    (one iopub stream, in order), so a few seconds is plenty."""
    return wait_for(page, "([el, old]) => el.src !== old && el.complete && el.naturalWidth > 0",
                    [img.element_handle(), old_src], REDRAW_GRACE_MS)


# --- the notebook, run in the browser -------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_page(browser, lab_server, sign_in, artifacts):
    """The notebook open in JupyterLab with every cell run; yields the page."""
    # tall enough that the tallest dashboard (cluster explorer) fits: element screenshots of
    # JupyterLab's inner scroll area are cut to the viewport
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.set_default_timeout(STEP_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        sign_in(page, "/lab/tree/03_dashboards.ipynb")
        wait_for_idle_notebook(page)
        page.evaluate("""() => {
            window.jupyterapp.shell.collapseLeft();  // the file browser: room for the apps
            return window.jupyterapp.commands.execute('notebook:run-all-cells');
        }""")
        # the last cell prints one status line per dashboard; a cell that raises stops run-all
        try:
            outcome = page.wait_for_function(
                """() => {
                    const texts = [...document.querySelectorAll('.jp-OutputArea-output')]
                        .map(e => e.innerText);
                    if (texts.some(t => t.includes('compare_runs:'))) return 'done';
                    if (texts.some(t => t.includes('Traceback'))) return 'raised';
                    return false;
                }""", timeout=RUN_ALL_S * 1000).json_value()
        except PlaywrightError as e:
            outcome = e.message.splitlines()[0]
        if outcome != "done":
            pytest.fail(f"run-all did not reach the status cell: {outcome}\n"
                        f"{diagnose(page, errors)}", pytrace=False)
        # widget views render after their outputs arrive (with a broken widget front end they
        # never do: the tests below then say which apps are missing)
        wait_for(page, "names => names.every(n => document.querySelector("
                 "'.jp-OutputArea-output .plaml-' + n))", list(APPS), ACTION_MS)
        page.errors = errors
        yield page
    finally:
        try:
            page.screenshot(path=str(artifacts / "notebook_full_page.png"), full_page=True)
        finally:
            context.close()
            lab_server.shutdown_kernels()  # the server stays up for the security tests


def test_run_all_in_jupyterlab_reports_every_dashboard_rendered(lab_page):
    status = lab_page.locator(".jp-OutputArea-output", has_text="compare_runs:").inner_text()
    lines = [ln for ln in status.splitlines() if ln.strip()]
    assert len(lines) == len(APPS) and all(ln.endswith("; rendered") for ln in lines), status
    for failure in ("Traceback", "Error displaying widget", "Loading widget"):
        found = lab_page.locator(".jp-OutputArea-output", has_text=failure).count()
        assert found == 0, (f"{found} output(s) show {failure!r}\n"
                            f"{diagnose(lab_page, lab_page.errors)}")


@pytest.mark.parametrize("name", list(APPS))
def test_dashboard_widgets_are_in_the_dom_and_drawn(lab_page, artifacts, name):
    root = app(lab_page, name)
    assert root.count() == 1 and root.is_visible(), (
        f"{name}: the widget is not in the DOM\n{diagnose(lab_page, lab_page.errors)}")
    spec = APPS[name]
    for control in spec["controls"]:
        assert root.locator(control).first.is_visible(), f"{name}: control {control} not shown"
    for view in spec["images"]:
        img = root.locator(f"img.plaml-view-{view}")
        assert img.is_visible() and image_loaded(img), f"{name}: image view {view} not drawn"
    for view in spec["plots"]:
        # plotly.js draws each trace as a <g class="trace"> of paths (bars, points, lines)
        marks = root.locator(f".plaml-view-{view} .js-plotly-plot .trace path")
        marks.first.wait_for(state="attached")
        assert marks.count() > 0, f"{name}: plotly view {view} drew nothing"
    save_small_png(screenshot(root), artifacts / f"browser_{name.replace('-', '_')}.png")


def test_mask_ratio_slider_keys_redraw_the_mask_image(lab_page, artifacts):
    root = app(lab_page, "mask-explorer")
    slider = root.locator(".plaml-mask-ratio")
    value, readout = slider.locator(".widget-readout"), root.locator(".plaml-readout")
    img = root.locator("img.plaml-view-figure")
    before_value, before_readout = value.inner_text(), readout.inner_text()
    before_src, before = img.get_attribute("src"), screenshot(img)
    handle = slider.locator(".noUi-handle")
    handle.focus()
    for _ in range(3):  # three steps of 0.05 down: fewer hidden patches
        handle.press("ArrowLeft")
    moved = f"mask ratio {before_value} -> {value.inner_text()}"
    assert value.inner_text() != before_value, "the slider did not move on ArrowLeft"
    # the kernel's re-render also rewrites the readout ("visible patches: 4 / 16")
    assert wait_for(lab_page, "([el, old]) => el.innerText !== old",
                    [readout.element_handle(), before_readout], ACTION_MS), (
        f"{moved}: the kernel did not re-render (readout unchanged)")
    assert new_png_shown(lab_page, img, before_src), (
        f"{moved}, kernel re-rendered ({readout.inner_text()!r}), "
        f"but the mask image in the browser was not updated")
    after = screenshot(img)
    save_small_png(after, artifacts / "browser_mask_explorer_after_slider.png")
    changed = changed_fraction(before, after)
    assert changed > 0.001, f"{moved} but the mask image changed in {changed:.2%} of pixels"


def test_switching_prototype_changes_the_gallery(lab_page):
    root = app(lab_page, "cluster-explorer")
    select = root.locator(".plaml-prototype select")
    gallery = root.locator("img.plaml-view-gallery")
    options = select.locator("option").all_inner_texts()
    assert len(options) >= 2, f"only {len(options)} prototype in use: nothing to switch to"
    before_src, before = gallery.get_attribute("src"), screenshot(gallery)
    # the kernel's re-render replaces the usage histogram (drawn after the gallery)
    usage = root.locator(".plaml-view-usage .js-plotly-plot").element_handle()
    select.focus()
    select.select_option(index=1)
    switched = f"prototype {options[0]!r} -> {options[1]!r}"
    assert wait_for(lab_page, "el => !el.isConnected", usage, ACTION_MS), (
        f"{switched}: the kernel did not re-render (usage histogram not replaced)")
    assert new_png_shown(lab_page, gallery, before_src), (
        f"{switched}, kernel re-rendered, but the gallery in the browser was not updated")
    after = screenshot(gallery)
    changed = changed_fraction(before, after)
    assert changed > 0.001, f"{switched} but the gallery changed in {changed:.2%} of pixels"


def test_embedding_scatter_draws_one_point_per_image(lab_page):
    root = app(lab_page, "cluster-explorer")
    shown = re.search(r"images:\s*(\d+)", root.locator(".plaml-readout").inner_text())
    assert shown, "cluster explorer readout has no image count"
    points = root.locator(".plaml-view-embedding .scatterlayer .trace").first.locator(
        "path.point")
    assert points.count() == int(shown.group(1))


# --- a run named by its path relative to the repo root ---------------------------------------------

RELATIVE_RUN = "experiments/runs/rel"
RELATIVE_NOTEBOOK = """\
from IPython.display import display
from plaml_lab import notebook as nb, viz

run = "{run}"  # relative to the project folder; this kernel runs in its notebooks/
monitor_app = viz.training_monitor(run, auto_refresh=False)
teacher_app = viz.teacher_compare(run)
display(monitor_app, teacher_app)
print(nb.app_status("training_monitor", monitor_app))
print(nb.app_status("teacher_compare", teacher_app))
"""


@pytest.fixture(scope="module")
def relative_run_notebook(lab_server):
    """A project laid out as a checkout inside the lab root (pyproject.toml, a short run with
    checkpoints in experiments/runs/rel, a notebook in notebooks/ that names the run by its
    repo-relative path, as README.md does); returns the notebook's /lab/tree URL path."""
    import nbformat

    from plaml_lab.train import pretrain
    project = lab_server.root / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = \"a-users-lab\"\n")
    pretrain("quick", project / RELATIVE_RUN,
             ["run.device=cpu", "run.max_steps=4", "run.ckpt_every=2", "run.keep_ckpts=3",
              "run.num_threads=1", "run.eval_knn=false", "run.progress=false",
              "data.num_train=256", "data.num_val=128"])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        RELATIVE_NOTEBOOK.format(run=RELATIVE_RUN))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, project / "notebooks" / "relative_run.ipynb")
    return "/lab/tree/project/notebooks/relative_run.ipynb"


def test_monitor_and_teacher_comparison_open_a_run_by_its_repo_relative_path(
        browser, lab_server, sign_in, relative_run_notebook, artifacts):
    """The issue's case: from a notebook in notebooks/, `run = "experiments/runs/..."` finds the
    project's run (current folder first, then the repo root: plaml_lab.paths.user_path) in the
    two dashboards over a run's history, as it does in the four image dashboards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.set_default_timeout(STEP_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        sign_in(page, relative_run_notebook)
        wait_for_idle_notebook(page)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        assert wait_for(page, """() => [...document.querySelectorAll('.jp-OutputArea-output')]
            .some(e => /teacher_compare:|Traceback/.test(e.innerText))""", None,
                        RUN_ALL_S * 1000), diagnose(page, errors)
        status = page.locator(".jp-OutputArea-output", has_text="teacher_compare:").inner_text()
        lines = [ln for ln in status.splitlines() if ln.startswith(("training_monitor",
                                                                   "teacher_compare"))]
        assert len(lines) == 2 and all(ln.endswith("; rendered") for ln in lines), status
        for name, view in (("training-monitor", "metrics"), ("teacher-compare", "compare")):
            marks = app(page, name).locator(f".plaml-view-{view} .js-plotly-plot .trace path")
            assert wait_for(page, "sel => document.querySelectorAll(sel).length > 0",
                            f".plaml-{name} .plaml-view-{view} .js-plotly-plot .trace path",
                            ACTION_MS), f"{name}: {view} not drawn\n{diagnose(page, errors)}"
            assert marks.count() > 0
        page.screenshot(path=str(artifacts / "browser_relative_run.png"), full_page=True)
    finally:
        context.close()
        lab_server.shutdown_kernels()
