"""The dashboards as a user sees them: notebooks/03_dashboards.ipynb run in JupyterLab, in
Chromium, with real input events. Python-side tests cannot see a missing front-end extension, a
plotly renderer mismatch or a widget version skew; these can.

One page for the module (opening the notebook and running every cell is most of the cost); the
tests run in file order on it. Screenshots: tests/artifacts/browser/ (PLAML_BROWSER_ARTIFACTS).
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest

try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # the `browser` fixture skips (or, under CI, fails) with the reason
    PlaywrightError = Exception

import pagetools as pt

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


def wait_for_idle_notebook(page, lab_path: str) -> None:
    """Until the notebook of `lab_path` (/lab/tree/PATH) is JupyterLab's current widget, with its
    cells and an idle kernel. JupyterLab restores the tabs of the server's saved workspace, so an
    earlier test's notebook can come back in front of this one, and run-all acts on the current
    widget: the notebook is opened (activated) by path until it is the current one."""
    path = lab_path.removeprefix("/lab/tree/")
    page.wait_for_function(
        """p => {
            const app = window.jupyterapp;
            const w = app && app.shell.currentWidget;
            if (!app) return false;
            if (!w || !w.context || w.context.path !== p) {
                app.commands.execute('docmanager:open', {path: p});
                return false;
            }
            const k = w.sessionContext && w.sessionContext.session
                      && w.sessionContext.session.kernel;
            return k && k.status === 'idle' && w.content && w.content.widgets.length > 0;
        }""", arg=path, polling=1000, timeout=RUN_ALL_S * 1000)


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
    context, page, errors = pt.new_page(browser, 1800, STEP_MS, console=True)
    try:
        sign_in(page, "/lab/tree/03_dashboards.ipynb")
        wait_for_idle_notebook(page, "/lab/tree/03_dashboards.ipynb")
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



# --- the fixes of 49ff16e as the browser draws them (captions, axes, legends, widths) ----------

NARROW = 1000  # px: a laptop's browser window; no dashboard may stick out of its output
RESIZE_MS = 20_000  # plotly re-draws every figure of the page on a resize: seconds when busy


# JupyterLab's layout has followed the window (its panels are sized in a later frame) and every
# autosized plotly figure (no layout.width) is as wide as its cell's output, give or take the
# output's padding: the figures' re-draws after a resize have landed
FIGURES_SETTLED = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(p => p.layout && !p.layout.width).every(p => {
        const outputs = [...document.querySelectorAll('.jp-OutputArea-output')]
            .filter(o => o.contains(p));
        const o = outputs[0].getBoundingClientRect();
        const w = p.querySelector('.main-svg').getBoundingClientRect().width;
        return o.right <= window.innerWidth && w <= o.width + 1 && w >= o.width - 10; })"""


@contextlib.contextmanager
def window_width(page, width: int):
    """The page at `width` px (JupyterLab re-lays out, plotly's autosized figures follow);
    the lab_page's own size again afterwards. Each time until the figures' re-draws landed: a
    resize still under way when the next one starts can leave a figure at the older size."""
    size = page.viewport_size
    page.set_viewport_size({"width": width, "height": size["height"]})
    try:
        wait_for(page, FIGURES_SETTLED, None, RESIZE_MS)
        yield page
    finally:
        page.set_viewport_size(size)
        wait_for(page, FIGURES_SETTLED, None, RESIZE_MS)


def test_mask_explorer_caption_says_grey_is_hidden_in_the_view_but_visible_in_token_panels(
        lab_page, artifacts):
    """The caption is drawn into the PNG: the image the browser shows must carry it."""
    root = app(lab_page, "mask-explorer")
    img = root.locator("img.plaml-view-figure")
    assert "target: tokens" in root.locator(".plaml-readout").inner_text()  # token panels
    caption = ("visible: hidden patches grey; token panels: hidden patches in PCA colours of "
               "the reconstruction teacher's tokens, visible patches grey")
    assert pt.caption_drawn(pt.shown_png(img), caption), (
        f"the mask explorer's image does not start with the caption {caption!r}")
    save_small_png(screenshot(img), artifacts / "browser_fix_mask_caption.png")


def test_cluster_scatter_has_axis_titles_a_colour_legend_and_nmi_in_words(lab_page, artifacts):
    root = app(lab_page, "cluster-explorer")
    plot = root.locator(".plaml-view-embedding .js-plotly-plot")
    x, y = pt.texts(plot, ".xtitle"), pt.texts(plot, ".ytitle")
    assert len(x) == len(y) == 1 and re.fullmatch(r"(PCA|t-SNE) 1", x[0]) and (
        y[0] == x[0][:-1] + "2"), f"scatter axis titles: x {x}, y {y}"
    entries = pt.texts(plot, ".legend .legendtext")
    assert entries and all(re.fullmatch(r"(#|class )\d+", e) for e in entries), (
        f"scatter legend: {entries}")
    assert "label" in " ".join(pt.texts(plot, ".legendtitletext"))
    svg = pt.boxes(plot, ".main-svg")[0]
    assert all(pt.inside(b, svg) for b in pt.boxes(plot, ".legend .traces")), "legend cut off"
    page_text = lab_page.evaluate("() => document.body.innerText")
    assert "NMI_SHUFFLED" not in page_text, "raw key NMI_SHUFFLED on the page"
    readout = root.locator(".plaml-readout").inner_text()
    assert "NMI with shuffled labels" in readout, f"cluster readout: {readout!r}"
    save_small_png(screenshot(root.locator(".plaml-view-embedding")),
                   artifacts / "browser_fix_cluster_scatter.png")


def test_no_dashboard_sticks_out_of_its_output_in_a_1000px_window(lab_page, artifacts):
    with window_width(lab_page, NARROW):
        found = {name: pt.parts_cut_off(app(lab_page, name)) for name in APPS}
        for name in ("cluster-explorer", "teacher-compare"):
            names = [p["name"] for p in found[name]]
            assert any("plot" in n for n in names), f"{name}: no plotly figure ({names})"
        cut = {name: [p for p in parts if p["cut"]] for name, parts in found.items()}
        assert not any(cut.values()), f"cut off in a {NARROW} px window: " + "; ".join(
            f"{name}: {p['name']} [{p['left']}, {p['right']}] beyond {p['cut'][0]}"
            for name, parts in cut.items() for p in parts)
        save_small_png(screenshot(app(lab_page, "cluster-explorer")),
                       artifacts / "browser_fix_cluster_explorer_1000px.png")


def test_attention_viewer_states_one_colour_scale_up_to_the_largest_weight(lab_page, artifacts):
    """The caption is drawn into the PNG; the readout (DOM text) gives each panel's largest
    weight: the image must state one scale from 0 to the largest of them."""
    root = app(lab_page, "attention-viewer")
    img = root.locator("img.plaml-view-figure")
    maxima = [float(v) for v in re.findall(r"max:\s*([0-9.e+-]+)",
                                           root.locator(".plaml-readout").inner_text())]
    assert len(maxima) >= 2, root.locator(".plaml-readout").inner_text()
    # the dropdowns' labels: 'block 2', 'mean of heads' or 'head 1'
    layer = re.search(r"\d+", root.locator(".plaml-layer select").input_value()).group()
    head = root.locator(".plaml-head select").input_value()
    head = head if head.startswith("mean") else "head " + re.search(r"\d+", head).group()
    top = max(maxima)  # 4 digits in the readout, 3 in the caption: either rounding of it
    png = pt.shown_png(img)
    captions = [f"class token -> patches, block {layer}, {head}; one colour scale, 0 to "
                f"{v:.3g}" for v in {top, top * (1 - 5e-4), top * (1 + 5e-4)}]
    assert any(pt.caption_drawn(png, c) for c in captions), (
        f"the attention image states none of {captions}")
    save_small_png(screenshot(img), artifacts / "browser_fix_attention_viewer.png")


def test_teacher_comparison_shows_ema_panel_and_legend_at_1000px_without_fixed_width(
        lab_page, artifacts):
    plot = app(lab_page, "teacher-compare").locator(".plaml-view-compare .js-plotly-plot")
    with window_width(lab_page, NARROW):
        output = pt.element_box(plot.locator(  # the cell's output (its plotly view's own
            # output area, an Output widget, grows with the figure)
            "xpath=ancestor::*[contains(@class, 'jp-OutputArea-output')][last()]"))
        svg = pt.boxes(plot, ".main-svg")[0]
        titles = dict(zip(pt.texts(plot, ".annotation-text"),
                          pt.boxes(plot, ".annotation-text")))
        assert "EMA momentum schedule" in titles, f"subplot titles: {list(titles)}"
        assert pt.inside(titles["EMA momentum schedule"], output), "EMA panel cut off"
        # each panel's title whole and clear of its neighbours'
        spans = sorted((b["left"], b["right"], t) for t, b in titles.items())
        assert spans[0][0] >= svg["left"] - 1 and spans[-1][1] <= svg["right"] + 1, (
            f"subplot titles cut off: {spans} in a figure [{svg['left']}, {svg['right']}]")
        overlaps = [(a[2], b[2]) for a, b in zip(spans, spans[1:]) if a[1] > b[0]]
        assert not overlaps, f"subplot titles overlap: {overlaps}"
        legend = pt.boxes(plot, ".legend .traces")
        assert legend and all(pt.inside(b, output) and pt.inside(b, svg) for b in legend), (
            f"legend outside the output {output}: {legend}")
        assert svg["width"] < 1100 and svg["right"] <= output["right"] + 1, (
            f"figure {svg['width']:.0f} px wide in an output of "
            f"{output['right'] - output['left']:.0f} px")
        save_small_png(screenshot(plot), artifacts / "browser_fix_teacher_compare_1000px.png")


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
    context, page, errors = pt.new_page(browser, 1800, STEP_MS)
    try:
        sign_in(page, relative_run_notebook)
        wait_for_idle_notebook(page, relative_run_notebook)
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
