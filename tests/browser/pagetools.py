"""Page queries of the browser tests: texts plotly drew, boxes that stick out of their output.

Plotly draws into SVG: axis titles are `text.xtitle` / `text.ytitle` (`.g-x2title`... for
further subplots), tick labels `.xtick text`, legend entries `.legend .legendtext`, subplot
titles `.annotation-text`, layout shapes `.shapelayer path`. Everything here reads what the
browser drew (boxes, texts, styles), not the figure's JSON.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from plaml_lab.viz import canvas as C

# Every <img> and plotly figure under `root` (its first .main-svg: the figure's full box) and,
# for each, the boxes it sticks out of on the right or left by more than a pixel: every
# .jp-OutputArea-output around it up to its notebook cell, and any ancestor in between that clips
# (overflow other than visible).
_CUT_OFF_JS = """(root) => {
    const out = [];
    // plotly's own <img class=plot-img> (image traces; empty here) is part of its figure
    const parts = [...root.querySelectorAll('img:not(.js-plotly-plot img), .js-plotly-plot')];
    for (const el of parts) {
        const shown = el.matches('img') ? el : el.querySelector('.main-svg');
        if (!shown) continue;
        const box = shown.getBoundingClientRect();
        const name = el.matches('img') ? 'img.' + [...el.classList].join('.')
            : 'plot in .' + [...el.closest('[class*=plaml-view-]').classList]
                .filter(c => c.startsWith('plaml-view-')).join('.');
        const cut = [];
        // up to the notebook cell: a plotly view is an Output widget, whose own output area
        // grows with the figure; the cell's output area is what the notebook gives it
        for (let a = shown.parentElement; a && !a.classList.contains('jp-Cell');
             a = a.parentElement) {
            const isOutput = a.classList.contains('jp-OutputArea-output');
            if (isOutput || getComputedStyle(a).overflowX !== 'visible') {
                const r = a.getBoundingClientRect();
                if (box.right > r.right + 1 || box.left < r.left - 1)
                    cut.push(`${isOutput ? 'jp-OutputArea-output' : a.className.split(' ')[0]}`
                             + ` [${Math.round(r.left)}, ${Math.round(r.right)}]`);
            }
        }
        out.push({name, left: Math.round(box.left), right: Math.round(box.right),
                  width: Math.round(box.width), cut,
                  natural: el.matches('img') ? el.naturalWidth : null});
    }
    return out;
}"""


def parts_cut_off(locator) -> list[dict]:
    """[{name, left, right, width, cut: [box that does not hold it, ...], natural: an image's
    own width in pixels (None for a figure)}] for every image and plotly figure of the
    element."""
    return locator.evaluate(_CUT_OFF_JS)


def texts(locator, selector: str) -> list[str]:
    """textContent of every element matching `selector` under the locator's element (SVG
    texts have no innerText)."""
    return locator.evaluate(
        "(root, sel) => [...root.querySelectorAll(sel)].map(e => e.textContent.trim())",
        selector)


def boxes(locator, selector: str) -> list[dict]:
    """Bounding boxes {left, right, top, bottom, width, height} of the matching elements."""
    return locator.evaluate(
        """(root, sel) => [...root.querySelectorAll(sel)].map(e => {
            const r = e.getBoundingClientRect();
            return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                    width: r.width, height: r.height};
        })""", selector)


def inside(inner: dict, outer: dict, slack: float = 1.0) -> bool:
    return (inner["left"] >= outer["left"] - slack and inner["right"] <= outer["right"] + slack
            and inner["top"] >= outer["top"] - slack
            and inner["bottom"] <= outer["bottom"] + slack)


def dashed_paths(locator, selector: str) -> list[dict]:
    """Boxes of the SVG paths under `selector` that Chromium strokes dashed."""
    return locator.evaluate(
        """(root, sel) => [...root.querySelectorAll(sel)]
            .filter(e => { const d = getComputedStyle(e).strokeDasharray;
                           return d && d !== 'none'; })
            .map(e => { const r = e.getBoundingClientRect();
                        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; })""",
        selector)


def element_box(locator) -> dict:
    b = locator.bounding_box()
    return {"left": b["x"], "right": b["x"] + b["width"], "top": b["y"],
            "bottom": b["y"] + b["height"]}


def shown_png(img_locator) -> bytes:
    """The PNG bytes an <img> shows (ipywidgets images are blob: URLs of the page)."""
    data = img_locator.evaluate("""async el => {
        const bytes = new Uint8Array(await (await fetch(el.src)).arrayBuffer());
        let s = ''; for (const b of bytes) s += String.fromCharCode(b);
        return btoa(s); }""")
    return base64.b64decode(data)


def caption_drawn(png_bytes: bytes, caption: str) -> bool:
    """Whether the image's title strip is exactly `caption` as plaml_lab.viz.canvas.compose
    draws it (same PIL, same font: the pixels match exactly). The caption is drawn into the
    PNG, out of the DOM's reach: this compares what the browser shows with it."""

    ref = C.compose([("", None)], panel=4, title=caption)
    top, width = 20, int(C._font(12).getlength(caption)) + 4  # compose's title strip (12 pt)
    shown = np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"))
    return (shown.shape[1] >= width and shown.shape[0] >= top
            and np.array_equal(shown[:top, :width], ref[:top, :width]))


def new_page(browser, height: int, timeout_ms: int, console: bool = False):
    """(context, page, errors): a fresh browser context 1400 px wide and `height` tall, each
    step's timeout, and the page's uncaught errors (and console errors with `console`) collected
    for the failure message."""
    context = browser.new_context(viewport={"width": 1400, "height": height})
    context.set_default_timeout(timeout_ms)
    page = context.new_page()
    errors: list[str] = []
    if console:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors
