"""The shared shell of every dashboard: one ipywidgets container with named controls, views
that show PNG images or plotly figures, and a `.state` dict of what is on screen.

Contract (tests and the browser tests rely on it):
- an app is an `App` (an `ipywidgets.VBox`) with CSS class `plaml-<app name>`;
- `app.controls[name]` is each control widget, CSS class `plaml-<name>` (underscores -> dashes),
  a stable `description`; changing its `.value` re-renders synchronously;
- `app.views[name]` is each view: an `ImageView` (ipywidgets.Image of PNG bytes) or a
  `PlotlyView` (ipywidgets.Output showing plotly's JupyterLab mime bundle; `.figure` is the
  `plotly.graph_objects.Figure` shown); CSS class `plaml-view-<name>`;
- `app.state` holds the arrays / numbers behind the latest render (documented per app), plus
  `render_s` (seconds the last render took) and `error` (a message) when a render failed.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from collections.abc import Callable, Iterable

import ipywidgets as widgets
import torch

from plaml_lab.viz.canvas import png as canvas_png
from plaml_lab.viz.plots import plotly_bundle


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with `n` torch CPU threads. One image through a small ViT is a few
    milliseconds of work; spreading it over threads costs more in hand-offs than it saves, and
    on a busy machine it is many times slower (measured: docs/dashboards.md)."""
    saved = torch.get_num_threads()
    if n and n != saved:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != saved:
            torch.set_num_threads(saved)


def build(cls: type, *args, **kw):
    """Construct an app with `cls.threads` torch threads (its one-off work: data, features)."""
    with torch_threads(cls.threads):
        return cls(*args, **kw)


def css_name(name: str) -> str:
    return "plaml-" + name.replace("_", "-")


class ImageView(widgets.Image):
    """A PNG image view: `.show(canvas)` shows an (H, W, 3) uint8 canvas (viz/canvas.py) and
    returns the PNG bytes."""

    def __init__(self, name: str, **kw):
        super().__init__(format="png", **kw)
        self.add_class(css_name("view-" + name))

    def show(self, canvas) -> bytes:
        data = canvas_png(canvas)
        self.value = data
        return data


class PlotlyView(widgets.Output):
    """A plotly figure shown through plotly's own mime type (JupyterLab renders it with the
    jupyterlab-plotly extension that ships in the plotly wheel); no widget extension needed.
    `.figure` keeps the Figure for tests and for saving."""

    def __init__(self, name: str, **kw):
        super().__init__(**kw)
        self.add_class(css_name("view-" + name))
        self.figure = None

    def show(self, fig) -> None:
        self.figure = fig
        self.outputs = ({"output_type": "display_data", "data": plotly_bundle(fig),
                         "metadata": {}},)


class App(widgets.VBox):
    """Base of the dashboards. Subclasses build controls and views in __init__ (via `control`
    and `view`), then call `finish(...)`; `render(parts)` re-draws the named parts."""

    app_name = "app"
    threads = 1  # torch threads while building and re-drawing (see torch_threads); 0 = default

    def __init__(self, title: str):
        super().__init__()
        self.add_class(css_name(self.app_name))
        self.controls: dict[str, widgets.Widget] = {}
        self.views: dict[str, widgets.Widget] = {}
        self.state: dict = {}
        self.title = widgets.HTML(f"<b>{html.escape(title)}</b>")
        self.readout = widgets.HTML("")
        self.readout.add_class(css_name("readout"))
        self._redraws: dict[str, tuple[str, ...]] = {}
        # the training monitor re-draws from a polling thread too: one render at a time
        self._render_lock = threading.RLock()

    # -- building -----------------------------------------------------------------------------
    def control(self, name: str, widget: widgets.Widget, redraws: Iterable[str] = ("all",)
                ) -> widgets.Widget:
        """Register a control; a change of its value re-renders the parts in `redraws`."""
        widget.add_class(css_name(name))
        self.controls[name] = widget
        self._redraws[name] = tuple(redraws)
        if hasattr(widget, "value"):
            widget.observe(lambda _change, n=name: self.render(self._redraws[n]), names="value")
        return widget

    def view(self, name: str, widget: widgets.Widget) -> widgets.Widget:
        self.views[name] = widget
        return widget

    def finish(self, rows: list[widgets.Widget]) -> None:
        """Lay out: title, controls (in registration order, wrapped), readout, then `rows`."""
        bar = widgets.HBox(list(self.controls.values()),
                           layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.children = [self.title, bar, self.readout, *rows]
        self.render(("all",))

    def unavailable(self, reason: str) -> None:
        """This run cannot show this app (e.g. a pixel MAE has no token maps): say why, with
        no controls; state['unavailable'] keeps the reason."""
        self.state["unavailable"] = reason
        self.controls.clear()
        self.readout.value = f"<i>{html.escape(reason)}</i>"
        self.children = [self.title, self.readout]

    # -- rendering ----------------------------------------------------------------------------
    def render(self, parts: Iterable[str] = ("all",)) -> None:
        """Re-draw `parts` ('all' = everything). A failure is shown in the readout and kept in
        state['error'] instead of vanishing into the widget log."""
        with self._render_lock:
            t0 = time.perf_counter()
            try:
                with torch_threads(self.threads):
                    self._render(set(parts))
                self.state.pop("error", None)
            except Exception as e:  # noqa: BLE001 - shown to the user, kept for tests
                self.state["error"] = f"{type(e).__name__}: {e}"
                self.readout.value = ("<span style='color:#b00'>"
                                      f"{html.escape(self.state['error'])}</span>")
            self.state["render_s"] = time.perf_counter() - t0

    def _render(self, parts: set[str]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_readout(self, items: dict[str, object]) -> None:
        cells = " &nbsp;|&nbsp; ".join(f"{html.escape(str(k))}: <b>{html.escape(_fmt(v))}</b>"
                                       for k, v in items.items())
        self.readout.value = f"<span style='font-size:90%'>{cells}</span>"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def wants(parts: set[str], *names: str) -> bool:
    """Whether a render of `parts` must re-draw any of `names`."""
    return "all" in parts or bool(parts.intersection(names))


def slider(description: str, lo, hi, value, step=1, kind: Callable = widgets.IntSlider,
           **kw) -> widgets.Widget:
    """Sliders update on release (continuous_update=False): one render per gesture."""
    return kind(value=value, min=lo, max=hi, step=step, description=description,
                continuous_update=False, style={"description_width": "initial"}, **kw)


def dropdown(description: str, options, value=None) -> widgets.Dropdown:
    w = widgets.Dropdown(options=options, description=description,
                         style={"description_width": "initial"},
                         layout=widgets.Layout(width="auto"))
    if value is not None:
        w.value = value
    return w


class PollingApp(App):
    """An App over files that change while a run trains (the training monitor, compare runs):
    with auto refresh on, a daemon thread calls `refresh()` every `interval` seconds until
    `polling_done()` says nothing more will change, then switches auto refresh off."""

    def __init__(self, title: str, interval: float = 5.0):
        super().__init__(title)
        self.interval = float(interval)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def refresh_controls(self, auto_refresh: bool) -> None:
        """The 'auto refresh' checkbox (starts / stops the polling thread) and a 'refresh'
        button (re-reads now, re-draws even when nothing changed)."""
        self.control("auto_refresh", widgets.Checkbox(value=auto_refresh,
                                                      description="auto refresh",
                                                      indent=False), redraws=())
        button = widgets.Button(description="refresh", icon="refresh")
        button.on_click(lambda _b: self.refresh(force=True))
        self.control("refresh", button)
        self.controls["auto_refresh"].observe(lambda c: self._set_auto(c["new"]), names="value")

    def refresh(self, force: bool = False) -> bool:  # pragma: no cover - each app's own
        raise NotImplementedError

    def polling_done(self) -> bool:  # pragma: no cover - each app's own
        raise NotImplementedError

    def _set_auto(self, on: bool) -> None:
        if on and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, daemon=True,
                                            name=f"plaml-{self.app_name}")
            self._thread.start()
        elif not on and self._thread is not None:
            self._stop.set()
            self._thread = None

    def _poll(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a half-written file: try again next tick
                continue
            if self.polling_done():
                self.controls["auto_refresh"].value = False  # stops this thread
                return

    def close(self) -> None:
        self._stop.set()
        super().close()
