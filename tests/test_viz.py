"""Tests for plaml_lab.viz: figure builders, attention capture, and the six dashboards built
headless. Every control of every app is changed programmatically and the test checks what is
displayed (the state arrays / figure data behind the picture), pinned to an independent
computation where there is one."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

from plaml_lab.data import normalize
from plaml_lab.method import schedules
from plaml_lab.method.masking import mask_from_noise
from plaml_lab.runs import load_run, random_init_run
from plaml_lab.viz import dashboards as D
from plaml_lab.viz import figures as F
from plaml_lab.viz import inspect as I
from plaml_lab.viz import plots as P
from plaml_lab.viz.attention import capture_attention, cls_attention


@pytest.fixture(scope="module")
def run(quick_run):
    return load_run(quick_run)


@pytest.fixture(scope="module")
def mask_app(run):
    return D.mask_explorer(run, ratio=0.25, seed=0)


@pytest.fixture(scope="module")
def cluster_app(run):
    return D.cluster_explorer(run, max_images=128, tsne_in_background=False)


def ok(app):
    assert "error" not in app.state, app.state.get("error")
    return app.state


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


# --- figures ---------------------------------------------------------------------------------

def test_pca_rgb_is_fitted_once_and_applied_to_every_array_in_range():
    g = torch.Generator().manual_seed(0)
    fit = torch.randn(64, 16, generator=g)
    other = torch.randn(10, 16, generator=g)
    (own,) = F.pca_rgb(fit)
    same, moved = F.pca_rgb(fit, fit, other)
    assert np.allclose(own, same)
    assert own.shape == (64, 3) and moved.shape == (10, 3)
    assert own.min() >= 0 and own.max() <= 1 and moved.min() >= 0 and moved.max() <= 1
    # the colour of a token depends on the fitted basis only, not on what else is applied
    (alone,) = F.pca_rgb(fit, other[:3])
    assert np.allclose(alone, moved[:3])
    # first component: same order as an independent SVD projection (up to the fixed sign)
    c = (fit - fit.mean(0)).double()
    pc1 = c @ torch.linalg.svd(c, full_matrices=False)[2][0]
    mid = (own[:, 0] > 0) & (own[:, 0] < 1)
    r = np.corrcoef(own[mid, 0], pc1.numpy()[mid])[0, 1]
    assert abs(r) > 0.999


def test_demo_figure_builders_return_figures_without_pyplot_state():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    images = torch.rand(6, 3, 16, 16)
    masks = torch.zeros(6, 16)
    masks[:, :12] = 1
    fig = F.mask_grid(images, masks, 4, recon=torch.rand(6, 3, 16, 16))
    assert len(fig.axes) == 3 * 6
    fig = F.pseudo_label_grid(images, torch.tensor([3, 3, 1, 3, 1, 7]), per_label=4)
    assert [a.get_ylabel() for a in fig.axes[::4]] == ["#3 (3)", "#1 (2)", "#7 (1)"]
    rows = [{"step": s, "loss": 1 / s, "loss_rec": 0.5 / s, "lr": 1e-3 * s} for s in range(1, 6)]
    fig = F.loss_curves(rows)
    assert {ln.get_label() for ax in fig.axes for ln in ax.get_lines()} >= {"loss", "lr"}
    assert plt.get_fignums() == before
    assert png_size(F.figure_png(fig))[0] > 100


def test_masked_image_greys_exactly_the_hidden_patches():
    img = torch.rand(3, 8, 8)
    mask = torch.tensor([1.0, 0, 0, 1])
    out = F.masked_image(img, mask, 4)
    assert np.all(out[:4, :4] == F.HIDDEN_GREY) and np.all(out[4:, 4:] == F.HIDDEN_GREY)
    assert np.allclose(out[:4, 4:], img.permute(1, 2, 0).numpy()[:4, 4:])


def test_to_matplotlib_copies_every_line_of_a_plotly_figure():
    rows = [{"step": s, "loss": 1 / s, "loss_rec": 0.5 / s, "loss_cls": 0.1, "loss_patch": 0.2,
             "lr": 1e-3, "momentum_labelling": 0.99} for s in range(1, 6)]
    fig = P.to_matplotlib(P.metrics_figure(rows))
    assert len(fig.axes) == 3
    assert [len(ax.get_lines()) for ax in fig.axes] == [4, 1, 1]
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), [1 / s for s in range(1, 6)])


# --- attention capture -----------------------------------------------------------------------

def test_capture_attention_equals_softmax_of_qkv_and_restores_the_fused_path(run):
    enc = run.encoder("student")
    x = normalize(torch.rand(2, 3, 16, 16))
    mods = [b.attn for b in enc.blocks]
    for m in mods:
        m.fused_attn = True
    with torch.no_grad():
        ref = enc(x)
        with capture_attention(enc) as weights:
            out = enc(x)
        # independent: block 0's weights from its own qkv projection
        blk = enc.blocks[0]
        h = blk.norm1(enc.embed(x))
        a = blk.attn
        qkv = a.qkv(h).reshape(2, h.shape[1], 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        expect = ((qkv[0] @ qkv[1].transpose(-2, -1)) * a.scale).softmax(-1)
    assert len(weights) == len(enc.blocks)
    assert torch.allclose(weights[0], expect, atol=1e-5)
    assert torch.allclose(out, ref, atol=1e-5)
    assert all(m.fused_attn for m in mods)
    assert all(not m.attn_drop._forward_hooks for m in mods)


def test_cls_attention_of_masked_view_is_nan_exactly_on_hidden_patches(run):
    enc = run.encoder("student")
    x = normalize(torch.rand(1, 3, 16, 16))
    noise = I.mask_noise(16, "random", 3)
    ids_keep = mask_from_noise(noise, 0.75)[0]
    att = cls_attention(enc, x, ids_keep)  # (depth, B, heads, L)
    assert att.shape == (2, 1, 2, 16)
    seen = torch.zeros(16, dtype=torch.bool)
    seen[ids_keep[0]] = True
    assert torch.isnan(att[..., ~seen]).all() and not torch.isnan(att[..., seen]).any()
    full = cls_attention(enc, x)
    assert (full.sum(-1) < 1).all() and (full > 0).all()  # the rest goes to the class token


# --- 1. mask explorer ------------------------------------------------------------------------

def test_mask_explorer_higher_ratio_shows_fewer_visible_patches(mask_app):
    c = mask_app.controls
    c["mask_ratio"].value = 0.25
    low = dict(ok(mask_app))
    c["mask_ratio"].value = 0.75
    high = ok(mask_app)
    assert low["num_visible"] == 12 and high["num_visible"] == 4
    grey = lambda s: int((s["visible"] == F.HIDDEN_GREY).all(-1).sum())  # noqa: E731
    assert grey(high) > grey(low)
    assert np.all(high["mask"] >= low["mask"])  # same seed: hidden patches only added
    assert high["png"] != low["png"]
    # token mode: maps coloured exactly at the hidden positions
    hidden = high["mask"] > 0.5
    assert not np.all(high["teacher_map"][hidden] == F.HIDDEN_GREY)
    assert np.all(high["student_map"][~hidden] == F.HIDDEN_GREY)


def test_mask_explorer_seed_strategy_and_image_change_what_is_shown(mask_app):
    c = mask_app.controls
    c["mask_ratio"].value = 0.5
    c["seed"].value = 0
    c["strategy"].value = "random"
    first = dict(ok(mask_app))
    c["seed"].value = 7
    seeded = dict(ok(mask_app))
    assert not np.array_equal(first["mask"], seeded["mask"])
    expect = mask_from_noise(I.mask_noise(16, "random", 7), 0.5)[1][0].numpy()
    assert np.array_equal(seeded["mask"], expect)
    c["strategy"].value = "block"
    block = dict(ok(mask_app))
    expect = mask_from_noise(I.mask_noise(16, "block", 7), 0.5)[1][0].numpy()
    assert np.array_equal(block["mask"], expect)
    c["image"].value = 5
    other = ok(mask_app)
    assert other["index"] == 5 and not np.allclose(other["image"], block["image"])


def test_reconstruct_targets_equal_the_teacher_tokens_at_hidden_positions(run):
    img = I.fetch(I.resolve_dataset(run), [2])["image"][0]
    res = I.reconstruct(run, img, 0.5, "random", 1)
    full = I.teacher_tokens(run, img[None], "target")[0]
    assert torch.allclose(res["teacher_rec"], full[res["ids_masked"]], atol=1e-5)
    assert res["pred_tokens"].shape == res["teacher_rec"].shape == (8, 32)


def test_mask_explorer_pixel_mode_pastes_the_prediction_into_hidden_patches_only(quick_yaml):
    pix = random_init_run(quick_yaml, ["method.target=pixels", "method.pseudo_labels=none"])
    app = D.mask_explorer(pix, ratio=0.5)
    s = ok(app)
    hidden = F.patch_to_pixels(s["mask"] > 0.5, 4)
    assert np.allclose(s["recon"][~hidden], s["image"][~hidden])
    assert not np.allclose(s["recon"][hidden], s["image"][hidden])
    assert s["teacher_map"] is None


# --- 2. token maps ---------------------------------------------------------------------------

def test_token_map_viewer_layer_seed_image_change_maps_and_cosine_is_pinned(run):
    app = D.token_map_viewer(run, seed=0)
    c = app.controls
    assert [v for _, v in c["layer"].options] == ["target", "1", "2"]
    target = dict(ok(app))
    c["layer"].value = "1"
    first = dict(ok(app))
    assert not np.allclose(first["teacher_rgb"], target["teacher_rgb"])
    # independent: cosine of the student's predictions and block-1 tokens at hidden positions
    img = I.fetch(I.resolve_dataset(run), [0])["image"][0]
    res = I.reconstruct(run, img, run.cfg.mask.ratio, run.cfg.mask.strategy, 0)
    tok = I.teacher_tokens(run, img[None], "1")[0][res["ids_masked"]]
    cos = torch.nn.functional.cosine_similarity(res["pred_tokens"], tok, dim=-1).numpy()
    assert np.allclose(first["cosine"][res["ids_masked"].numpy()], cos, atol=1e-5)
    assert np.isnan(first["cosine"][first["mask"] < 0.5]).all()
    c["seed"].value = 3
    seeded = dict(ok(app))
    assert not np.array_equal(seeded["mask"], first["mask"])
    c["image"].value = 4
    assert not np.allclose(ok(app)["teacher_rgb"], seeded["teacher_rgb"])


def test_token_map_viewer_explains_when_a_run_has_no_token_targets(quick_yaml):
    pix = random_init_run(quick_yaml, ["method.target=pixels", "method.pseudo_labels=none"])
    app = D.token_map_viewer(pix)
    assert "method.target=pixels" in app.state["unavailable"] and not app.controls


# --- 3. clusters -----------------------------------------------------------------------------

def test_cluster_explorer_another_prototype_shows_other_images(cluster_app, run):
    app = cluster_app
    c = app.controls
    s = ok(app)
    labels = app.image_labels
    first_k = c["prototype"].value
    assert len(s["gallery_indices"]) > 0 and np.all(labels[s["gallery_indices"]] == first_k)
    options = [v for _, v in c["prototype"].options]
    assert len(options) >= 2, "a run whose teacher uses one prototype cannot test this"
    c["prototype"].value = options[1]
    s = ok(app)
    assert np.all(labels[s["gallery_indices"]] == options[1])
    assert not set(s["gallery_indices"]) & set(np.flatnonzero(labels == first_k))
    bars = app.views["usage"].figure.data[0]
    assert list(bars.y) == sorted(np.bincount(labels).tolist(), reverse=True)[:len(bars.y)]
    assert bars.marker.color[list(bars.customdata).index(options[1])] == "#d62728"
    # pseudo labels pinned to an independent computation: the teacher's centered argmax
    teacher = run.model.labelling_teacher
    with torch.no_grad():
        tok = teacher.encoder(normalize(app.images))
        scores = teacher.heads["cls"](tok[:, 0])
    expect = (scores - run.model.center_cls).argmax(-1).numpy()
    assert np.array_equal(labels, expect)


def test_cluster_explorer_image_picker_redraws_its_cluster_map(cluster_app, run):
    app = cluster_app
    app.controls["image"].value = 9
    s = ok(app)
    teacher = run.model.labelling_teacher
    with torch.no_grad():
        tok = teacher.encoder(normalize(app.images[9:10]))
        scores = teacher.heads["patch"](tok[0, 1:])
    expect = (scores - run.model.center_patch).argmax(-1).numpy()
    assert s["index"] == 9 and np.array_equal(s["patch_labels"], expect)
    assert np.allclose(s["cluster_map"], F.label_map(expect, app.k))
    png = s["png_map"]
    app.controls["image"].value = 10
    assert ok(app)["png_map"] != png


def test_cluster_explorer_embedding_and_colour_controls_change_the_scatter(cluster_app):
    app = cluster_app
    c = app.controls
    c["embedding"].value = "pca"
    c["colour_by"].value = "pseudo label"
    pca = dict(ok(app))
    f = app.pl["features"].double()
    f = f - f.mean(0)
    pc = (f @ torch.linalg.svd(f, full_matrices=False)[2][:2].T).numpy()
    assert np.allclose(np.abs(pca["xy"]), np.abs(pc), atol=1e-6)
    scatter = app.views["embedding"].figure.data[0]
    assert np.array_equal(np.asarray(scatter.customdata)[:, 0], np.arange(len(app.images)))
    c["colour_by"].value = "true label"
    assert np.array_equal(ok(app)["colour"], app.labels)
    assert app.views["embedding"].figure.data[0].marker.color != scatter.marker.color
    c["embedding"].value = "tsne"
    s = ok(app)
    assert s["embedding"] == "tsne" and s["xy"].shape == pca["xy"].shape
    assert not np.allclose(s["xy"], pca["xy"])
    assert set(s["scores"]) == {"nmi", "ari", "ami", "nmi_shuffled"}


# --- 4. attention ----------------------------------------------------------------------------

def test_attention_viewer_layer_head_and_view_controls_change_the_maps(run):
    app = D.attention_viewer(run)
    c = app.controls
    s = dict(ok(app))
    assert list(s["maps"]) == ["student", "labelling teacher", "reconstruction teacher"]
    assert s["layer"] == 2
    c["head"].value = 0
    h0 = {k: v.copy() for k, v in ok(app)["maps"].items()}
    c["head"].value = 1
    h1 = {k: v.copy() for k, v in ok(app)["maps"].items()}
    for k in s["maps"]:  # the mean of heads is the mean of the heads
        assert np.allclose(s["maps"][k], (h0[k] + h1[k]) / 2, atol=1e-6)
    c["layer"].value = 1
    assert not np.allclose(ok(app)["maps"]["student"], h1["student"])
    c["student_view"].value = "masked"
    s = ok(app)
    hidden = round(16 * run.cfg.mask.ratio)
    assert np.isnan(s["maps"]["student"]).sum() == hidden
    assert not np.isnan(s["maps"]["labelling teacher"]).any()
    before = s["png"]
    c["image"].value = 3
    assert ok(app)["png"] != before


# --- 5. training monitor ---------------------------------------------------------------------

@pytest.fixture
def live_run(quick_run, tmp_path):
    """A copy of the run's config and metrics, as if training were still going."""
    out = tmp_path / "live"
    out.mkdir()
    shutil.copy(quick_run / "config.yaml", out)
    rows = [json.loads(line) for line in (quick_run / "metrics.jsonl").read_text().splitlines()]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    return out, rows


def _append(path, row):
    with open(path / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def test_training_monitor_controls_change_the_plotted_data(live_run):
    out, rows = live_run
    app = D.training_monitor(out, auto_refresh=False)
    c = app.controls
    fig = ok(app)["figure"]
    names = [t.name for t in fig.data]
    assert names[:4] == ["loss", "loss_rec", "loss_cls", "loss_patch"] and "lr" in names
    c["part_loss_cls"].value = False
    assert "loss_cls" not in [t.name for t in ok(app)["figure"].data]
    c["smoothing"].value = 2
    y = np.asarray(ok(app)["figure"].data[0].y)
    raw = [r["loss"] for r in rows[:2]]
    assert np.allclose(y, [raw[0], (raw[0] + raw[1]) / 2])
    c["log_y"].value = True
    assert ok(app)["figure"].layout.yaxis.type == "log"


def test_training_monitor_refresh_shows_rows_logged_since(live_run):
    out, rows = live_run
    app = D.training_monitor(out, auto_refresh=False)
    assert ok(app)["steps"] == [r["step"] for r in rows[:2]]
    assert app.refresh() is False  # nothing new: no redraw
    _append(out, rows[2])
    assert app.refresh() is True
    assert ok(app)["steps"] == [r["step"] for r in rows[:3]]
    assert list(app.state["figure"].data[0].x) == [r["step"] for r in rows[:3]]


def test_training_monitor_of_a_finished_run_does_not_poll(quick_run):
    app = D.training_monitor(quick_run)  # summary.json written after the last metrics row
    assert ok(app)["finished"] and not app.controls["auto_refresh"].value
    assert app._thread is None


def test_training_monitor_auto_refresh_follows_a_growing_file_then_stops(live_run):
    out, rows = live_run
    app = D.training_monitor(out, auto_refresh=True, interval=0.05)
    try:
        _append(out, rows[2])
        deadline = time.monotonic() + 10
        while len(app.state.get("steps", [])) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(app.state["steps"]) == 3
        (out / "summary.json").write_text(json.dumps({"steps": rows[2]["step"]}))
        deadline = time.monotonic() + 10
        while app.controls["auto_refresh"].value and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state["finished"] and not app.controls["auto_refresh"].value
    finally:
        app.close()


# --- 6. teacher comparison -------------------------------------------------------------------

def test_teacher_compare_distances_agreement_and_schedules_are_pinned(quick_run, run):
    app = D.teacher_compare(run, max_images=64, num_maps=3)
    s = dict(ok(app))
    assert s["steps"] == [4, 8, 12]
    for i, step in enumerate(s["steps"]):  # independent: straight from the checkpoint file
        sd = torch.load(quick_run / "checkpoints" / f"step_{step:07d}.pt",
                        weights_only=True)["model"]
        names = [k for k in sd if k.startswith("student.encoder.") and "pos_embed" not in k]
        for t in ("labelling", "reconstruction"):
            d = sum(((sd[k.replace("student.", f"teachers.{t}.")] - sd[k]) ** 2).sum()
                    for k in names) ** 0.5
            n = sum((sd[k] ** 2).sum() for k in names) ** 0.5
            assert s["distances"][t]["abs"][i] == pytest.approx(float(d), rel=1e-5)
            assert s["distances"][t]["rel"][i] == pytest.approx(float(d / n), rel=1e-5)
    # the slower (reconstruction) teacher lags the student more than the labelling teacher
    assert s["distances"]["reconstruction"]["abs"][-1] > s["distances"]["labelling"]["abs"][-1]
    assert all(0 <= v <= 1 for v in s["agreement"]["class token"] + s["agreement"]["data tokens"])
    # the schedule the app draws goes through every momentum the run logged
    fig = s["figure"]
    for t in ("labelling", "reconstruction"):
        logged = [tr for tr in fig.data if tr.name == f"{t} logged"][0]
        te = getattr(run.cfg.teachers, t)
        total = run.summary["total_steps"]
        expect = [schedules.momentum(x, total, te.momentum, te.momentum_end) for x in logged.x]
        assert np.allclose(logged.y, expect, rtol=0, atol=1e-12) and len(logged.x) >= 2


def test_teacher_compare_controls_move_the_marker_and_switch_the_distance(run):
    app = D.teacher_compare(run, max_images=32, num_maps=2)
    c = app.controls
    dist_trace = lambda: np.asarray(app.state["figure"].data[0].y)  # noqa: E731
    rel = dist_trace()
    c["distance"].value = "abs"
    assert np.allclose(dist_trace(), app.state["distances"]["labelling"]["abs"])
    assert not np.allclose(dist_trace(), rel)
    png = ok(app)["png_maps"]
    c["checkpoint"].value = 0
    s = ok(app)
    assert s["selected_step"] == 4
    assert {sh.x0 for sh in s["figure"].layout.shapes} == {4}
    assert s["png_maps"] != png


# --- the contract the notebooks and browser tests rely on ------------------------------------

def test_apps_without_a_run_folder_say_why_instead_of_failing(quick_yaml):
    rnd = random_init_run(quick_yaml)
    for make in (D.training_monitor, D.teacher_compare):
        app = make(rnd)
        assert "unavailable" in app.state and app.readout.value


def test_every_app_is_one_container_with_css_classes_and_described_controls(
        run, mask_app, cluster_app):
    import ipywidgets as widgets
    apps = [mask_app, cluster_app, D.token_map_viewer(run), D.attention_viewer(run),
            D.training_monitor(run, auto_refresh=False), D.teacher_compare(run, max_images=16)]
    for app in apps:
        assert isinstance(app, widgets.VBox)
        assert f"plaml-{app.app_name}" in app._dom_classes
        for name, w in app.controls.items():
            assert w.description, name
            assert f"plaml-{name.replace('_', '-')}" in w._dom_classes
        for name, v in app.views.items():
            assert f"plaml-view-{name}" in v._dom_classes
            if isinstance(v, widgets.Image):
                assert png_size(v.value)[0] > 50
            else:
                assert "application/vnd.plotly.v1+json" in v.outputs[0]["data"]
        assert app.state["render_s"] < 30
    assert "plaml-mask-ratio" in mask_app.controls["mask_ratio"]._dom_classes
    assert "plaml-prototype" in cluster_app.controls["prototype"]._dom_classes


def test_default_run_is_a_random_init_model_of_the_lab_preset():
    r = I.resolve_run(None)
    assert r.path is None and r.step == 0
    assert I.default_preset().name in ("lab.yaml", "quick.yaml")


# --- what a reader sees without decoding it ------------------------------------------------

def test_mask_caption_says_grey_is_hidden_in_the_view_but_visible_in_token_panels():
    tokens = D.mask_caption(tokens=True, pixels=False)
    assert "visible: hidden patches grey" in tokens
    assert "token panels: hidden patches in PCA colours" in tokens
    assert tokens.endswith("visible patches grey")
    pixels = D.mask_caption(tokens=False, pixels=True)
    assert "token" not in pixels and "reconstruction: hidden patches predicted" in pixels


def test_cluster_scatter_has_axis_titles_a_colour_legend_and_readable_score_names(cluster_app):
    app = cluster_app
    app.controls["embedding"].value = "pca"
    app.controls["colour_by"].value = "pseudo label"
    fig = app.views["embedding"].figure
    assert fig.layout.xaxis.title.text == "PCA 1" and fig.layout.yaxis.title.text == "PCA 2"
    points, legend = fig.data[0], [t for t in fig.data if t.showlegend is not False]
    assert len(points.x) == len(app.images)  # the points stay one trace
    used = np.unique(app.image_labels)
    assert 0 < len(legend) <= min(len(used), P.LEGEND_LABELS)
    colours = dict(zip(np.asarray(points.customdata)[:, 1].astype(int), points.marker.color))
    for t in legend:  # each legend swatch is the colour of its label's points
        assert t.marker.color == colours[int(t.name.lstrip("#"))]
    assert fig.layout.legend.title.text.startswith("pseudo label")
    readout = app.readout.value
    assert "NMI_SHUFFLED" not in readout and "NMI with shuffled labels (chance level)" in readout


def test_attention_panels_share_one_colour_scale(run, monkeypatch):
    from plaml_lab.viz import canvas

    seen = {}
    real = canvas.compose

    def spy(items, **kw):
        seen.update(kw)
        return real(items, **kw)

    monkeypatch.setattr(D.C, "compose", spy)
    app = D.attention_viewer(run)
    s = ok(app)
    top = max(float(np.nanmax(m)) for m in s["maps"].values())
    assert seen["vmin"] == 0.0 and seen["vmax"] == pytest.approx(top) == s["vmax"]
    # a panel's own maximum would differ between encoders: the shared one is the largest
    assert len({round(float(np.nanmax(m)), 6) for m in s["maps"].values()}) > 1


def test_teacher_comparison_and_usage_charts_are_not_cut_off(run):
    fig = P.teacher_compare_figure({"labelling": ([1, 2], [0.1, 0.2])}, {}, {}, {}, None, "abs")
    assert fig.layout.width is None and fig.layout.autosize  # fills the output area
    # panel titles fit a panel of a 1,000 px window (~210 px: the browser test measures them)
    rel = P.teacher_compare_figure({}, {}, {}, {}, None, "relative to ||student||")
    titles = [a for a in rel.layout.annotations if a.text]
    assert len(titles) == 3 and all(a.font.size <= 12 for a in titles)
    assert max(len(line) for a in titles for line in a.text.split("<br>")) <= 26
    usage = P.usage_histogram(np.arange(64))
    assert usage.layout.xaxis.title.text and usage.layout.margin.r >= 30
