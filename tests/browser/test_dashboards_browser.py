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

RUN_ALL_S = 240  # a fresh kernel imports torch, trains the SMOKE run, builds six apps: ~30 s
ACTION_MS = 60_000
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


def wait_for_new_src(page, img, old_src: str) -> None:
    """Wait until an ipywidgets Image shows a new PNG (each update gets a fresh blob URL)."""
    page.wait_for_function("([el, old]) => el.src !== old && el.complete && el.naturalWidth > 0",
                           arg=[img.element_handle(), old_src], timeout=ACTION_MS)


# --- the notebook, run in the browser -------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_page(browser, sign_in, artifacts):
    """The notebook open in JupyterLab with every cell run; yields the page."""
    # tall enough that the tallest dashboard (cluster explorer) fits: element screenshots of
    # JupyterLab's inner scroll area are cut to the viewport
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.set_default_timeout(ACTION_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        sign_in(page, "/lab/tree/03_dashboards.ipynb")
        page.wait_for_function(
            """() => {
                const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session
                          && w.sessionContext.session.kernel;
                return k && k.status === 'idle' && w.content && w.content.widgets.length > 0;
            }""", timeout=RUN_ALL_S * 1000)
        page.evaluate("""() => {
            window.jupyterapp.shell.collapseLeft();  // the file browser: room for the apps
            return window.jupyterapp.commands.execute('notebook:run-all-cells');
        }""")
        # the last cell prints one status line per dashboard
        try:
            page.locator(".jp-OutputArea-output", has_text="teacher_compare:").wait_for(
                timeout=RUN_ALL_S * 1000)
        except PlaywrightError as e:
            pytest.fail(f"run-all did not reach the status cell: {e.message.splitlines()[0]}\n"
                        f"{diagnose(page, errors)}", pytrace=False)
        page.errors = errors
        yield page
    finally:
        try:
            page.screenshot(path=str(artifacts / "notebook_full_page.png"), full_page=True)
        finally:
            context.close()


def test_run_all_in_jupyterlab_reports_every_dashboard_rendered(lab_page):
    status = lab_page.locator(".jp-OutputArea-output", has_text="teacher_compare:").inner_text()
    lines = [ln for ln in status.splitlines() if ln.strip()]
    assert len(lines) == 6 and all(ln.endswith("; rendered") for ln in lines), status
    for failure in ("Traceback", "Error displaying widget", "Loading widget"):
        found = lab_page.locator(".jp-OutputArea-output", has_text=failure).count()
        assert found == 0, (f"{found} output(s) show {failure!r}\n"
                            f"{diagnose(lab_page, lab_page.errors)}")


@pytest.mark.parametrize("name", list(APPS))
def test_dashboard_widgets_are_in_the_dom_and_drawn(lab_page, artifacts, name):
    root = app(lab_page, name)
    root.wait_for(state="visible")
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
    readout = slider.locator(".widget-readout")
    img = root.locator("img.plaml-view-figure")
    before_value, before_src, before = readout.inner_text(), img.get_attribute("src"), \
        screenshot(img)
    handle = slider.locator(".noUi-handle")
    handle.focus()
    for _ in range(3):  # three steps of 0.05 down: fewer hidden patches
        handle.press("ArrowLeft")
    lab_page.wait_for_function("([el, old]) => el.innerText !== old",
                               arg=[readout.element_handle(), before_value], timeout=ACTION_MS)
    wait_for_new_src(lab_page, img, before_src)
    after = screenshot(img)
    save_small_png(after, artifacts / "browser_mask_explorer_after_slider.png")
    changed = changed_fraction(before, after)
    assert changed > 0.001, (f"mask ratio {before_value} -> {readout.inner_text()} but the "
                             f"mask image changed in {changed:.2%} of pixels")


def test_switching_prototype_changes_the_gallery(lab_page):
    root = app(lab_page, "cluster-explorer")
    select = root.locator(".plaml-prototype select")
    gallery = root.locator("img.plaml-view-gallery")
    options = select.locator("option").all_inner_texts()
    assert len(options) >= 2, f"only {len(options)} prototype in use: nothing to switch to"
    before_src, before = gallery.get_attribute("src"), screenshot(gallery)
    select.focus()
    select.select_option(index=1)
    wait_for_new_src(lab_page, gallery, before_src)
    after = screenshot(gallery)
    changed = changed_fraction(before, after)
    assert changed > 0.001, (f"prototype {options[0]!r} -> {options[1]!r} but the gallery "
                             f"changed in {changed:.2%} of pixels")


def test_embedding_scatter_draws_one_point_per_image(lab_page):
    root = app(lab_page, "cluster-explorer")
    shown = re.search(r"images:\s*(\d+)", root.locator(".plaml-readout").inner_text())
    assert shown, "cluster explorer readout has no image count"
    points = root.locator(".plaml-view-embedding .scatterlayer .trace").first.locator(
        "path.point")
    assert points.count() == int(shown.group(1))
