"""The dashboards: ipywidgets apps over a run (or a random-init model of the lab preset).

Each `name(run=None, dataset=None, **options)` returns one `App` (an ipywidgets.VBox, see
viz/app.py for the contract: `.controls`, `.views`, `.state`, CSS classes). run: a run folder,
a checkpoint file or a loaded Run; None builds a random-init model of the lab preset. dataset:
None uses the run's own dataset, held-out split; 'train' / 'val', or any Dataset.

    mask_explorer     masks, the student's view, and the reconstruction (pixels or token maps)
    token_map_viewer  PCA colours of teacher targets vs student predictions, per-patch cosine
    cluster_explorer  pseudo-label clusters: cluster maps, gallery, usage, embedding, NMI/ARI
    attention_viewer  class-token attention of the student and each teacher, per layer / head
    training_monitor  loss parts, lr, momenta from metrics.jsonl, refreshing while training
    teacher_compare   labelling vs reconstruction teacher over training
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
import ipywidgets as widgets

from plaml_lab.data import normalize, probe_indices
from plaml_lab.method.masking import mask_from_noise
from plaml_lab.probes import nmi_ari
from plaml_lab.viz import canvas as C
from plaml_lab.viz import figures as F
from plaml_lab.viz import inspect as I
from plaml_lab.viz import plots as P
from plaml_lab.viz.app import App, ImageView, PlotlyView, build, dropdown, slider, wants
from plaml_lab.viz.attention import cls_attention
from plaml_lab.viz.monitors import teacher_compare, training_monitor

__all__ = ["App", "mask_explorer", "token_map_viewer", "cluster_explorer", "attention_viewer",
           "training_monitor", "teacher_compare", "APPS"]


class _ImageApp(App):
    """An app over one run and one dataset with an image picker."""

    def __init__(self, title: str, run, dataset, index: int):
        super().__init__(title)
        self.run = I.resolve_run(run)
        self.run.model.eval()
        self.dataset = I.resolve_dataset(self.run, dataset)
        self.cfg = self.run.cfg
        self.patch = self.cfg.model.patch_size
        self.num_patches = self.run.model.student.num_patches
        self.grid = F.grid_size(self.num_patches)
        n = len(self.dataset)
        self.control("image", slider("image", 0, n - 1, min(int(index), n - 1)))
        self.figure = self.view("figure", ImageView("figure"))

    def image(self) -> torch.Tensor:
        return I.fetch(self.dataset, [self.controls["image"].value])["image"][0]

    def on_grid(self, values) -> np.ndarray:
        """(L,) or (L, C) per-patch values -> (H, W[, C]) pixels (for display)."""
        return F.patch_to_pixels(values, self.patch)


# --- 1. masks ------------------------------------------------------------------------------

class MaskExplorer(_ImageApp):
    """state: index, image (H, W, 3), mask (L,) 1 = hidden, num_visible, visible (H, W, 3) the
    student's view, recon (H, W, 3) visible + reconstructed patches (pixel mode) or None,
    teacher_map / student_map (L, 3) PCA colours of the reconstruction teacher's targets and the
    student's predicted tokens at hidden positions, grey elsewhere (token mode) or None,
    loss_rec of this image and mask, png (the figure's bytes)."""

    app_name = "mask-explorer"

    def __init__(self, run=None, dataset=None, index: int = 0, ratio: float | None = None,
                 strategy: str | None = None, seed: int = 0):
        super().__init__("Mask explorer: what the student sees and what it reconstructs", run,
                         dataset, index)
        lo, hi = I.ratio_bounds(self.num_patches)
        ratio = self.cfg.mask.ratio if ratio is None else ratio
        self.control("mask_ratio", slider("mask ratio", lo, hi, float(np.clip(ratio, lo, hi)),
                                          0.05, widgets.FloatSlider))
        self.control("strategy", dropdown("strategy", ["random", "block"],
                                          strategy or self.cfg.mask.strategy))
        self.control("seed", widgets.IntText(value=int(seed), description="seed",
                                             layout=widgets.Layout(width="140px")))
        self.finish([self.figure])

    def _render(self, parts: set[str]) -> None:
        c = self.controls
        img = self.image()
        res = I.reconstruct(self.run, img, c["mask_ratio"].value, c["strategy"].value,
                            c["seed"].value)
        mask = res["mask"].numpy()
        visible = F.masked_image(img, mask, self.patch)
        items = [("image", F.image_hwc(img)),
                 (f"visible: {int((mask < 0.5).sum())} of {len(mask)} patches", visible)]
        recon = teacher_map = student_map = None
        target = self.cfg.method.target
        if "recon" in res:
            recon = F.paste_patches(img, res["recon"], mask, self.patch)
            items.append(("reconstruction + visible", recon))
        elif "pred_tokens" in res and "teacher_rec" in res:
            full = I.teacher_tokens(self.run, img[None], "target")[0]
            ids = res["ids_masked"].numpy()
            t_rgb, s_rgb = F.pca_rgb(full, res["teacher_rec"], res["pred_tokens"])
            teacher_map = np.full((self.num_patches, 3), F.HIDDEN_GREY, np.float32)
            student_map = teacher_map.copy()
            teacher_map[ids] = t_rgb
            student_map[ids] = s_rgb
            items += [("teacher target tokens", self.on_grid(teacher_map)),
                      ("student predicted tokens", self.on_grid(student_map))]
        else:
            items.append((f"no reconstruction\n(method.target={target})", None))
        fig = C.compose(items, title=mask_caption(teacher_map is not None, recon is not None))
        png = self.figure.show(fig)
        self.state.update(index=c["image"].value, image=F.image_hwc(img), mask=mask,
                          num_visible=int((mask < 0.5).sum()), visible=visible, recon=recon,
                          teacher_map=teacher_map, student_map=student_map,
                          loss_rec=res["loss_rec"], png=png)
        self.set_readout({"visible patches": f"{self.state['num_visible']} / {len(mask)}",
                          "reconstruction loss (this image)": res["loss_rec"],
                          "target": target})


def mask_caption(tokens: bool, pixels: bool) -> str:
    """What grey means per panel: hidden patches in the view, seen ones in the token panels."""
    caption = "visible: hidden patches grey"
    if pixels:
        caption += "; reconstruction: hidden patches predicted"
    if tokens:
        caption += ("; token panels: hidden patches in PCA colours of the reconstruction "
                    "teacher's tokens, visible patches grey")
    return caption


def mask_explorer(run=None, dataset=None, **options) -> MaskExplorer:
    """Image picker, mask ratio, strategy (random | block), seed -> the image, the visible
    patches and the reconstruction: pixels (pixel mode) or the reconstruction teacher's target
    token map next to the student's predicted one (token mode). options: index, ratio,
    strategy, seed (initial values)."""
    return build(MaskExplorer, run, dataset, **options)


# --- 2. token maps -------------------------------------------------------------------------

class TokenMapViewer(_ImageApp):
    """state: index, layer, mask (L,), teacher_rgb (L, 3) PCA colours of the teacher's tokens of
    the chosen layer at every position, student_rgb (L, 3) the student's predictions at hidden
    positions in the same PCA basis (grey elsewhere), cosine (L,) cosine(prediction, teacher
    token) at hidden positions (NaN elsewhere), mean_cosine, png."""

    app_name = "token-map-viewer"

    def __init__(self, run=None, dataset=None, index: int = 0, layer: str = "target",
                 seed: int = 0, ratio: float | None = None):
        super().__init__("Token maps: reconstruction teacher's tokens vs the student's "
                         "predictions", run, dataset, index)
        if self.cfg.method.target != "tokens":
            self.unavailable(f"method.target={self.cfg.method.target}: token maps need a run "
                             "that reconstructs tokens (method.target=tokens)")
            return
        self.ratio = self.cfg.mask.ratio if ratio is None else float(ratio)
        self.control("layer", dropdown("teacher layer", I.teacher_layer_options(self.cfg), layer))
        self.control("seed", widgets.IntText(value=int(seed), description="mask seed",
                                             layout=widgets.Layout(width="160px")))
        self.finish([self.figure])

    def _render(self, parts: set[str]) -> None:
        c = self.controls
        img = self.image()
        res = I.reconstruct(self.run, img, self.ratio, self.cfg.mask.strategy, c["seed"].value)
        mask = res["mask"].numpy()
        ids = res["ids_masked"]
        teacher = I.teacher_tokens(self.run, img[None], c["layer"].value)[0]  # (L, D)
        t_rgb, s_rgb = F.pca_rgb(teacher, teacher, res["pred_tokens"])
        student_rgb = np.full((self.num_patches, 3), F.HIDDEN_GREY, np.float32)
        student_rgb[ids.numpy()] = s_rgb
        cosine = I.cosine_per_patch(res["pred_tokens"], teacher[ids], ids, self.num_patches)
        layer_label = dict((v, k) for k, v in I.teacher_layer_options(self.cfg))[c["layer"].value]
        fig = C.compose([("image", F.image_hwc(img)),
                        ("visible", F.masked_image(img, mask, self.patch)),
                        (f"teacher: {layer_label}", self.on_grid(t_rgb)),
                        ("student predictions", self.on_grid(student_rgb)),
                        ("cosine(prediction, teacher)", cosine.reshape(self.grid, self.grid))],
                       vmin=-1, vmax=1, cmap="RdBu_r",
                       title="PCA fitted on the teacher tokens, applied to both")
        png = self.figure.show(fig)
        mean_cos = float(np.nanmean(cosine))
        self.state.update(index=c["image"].value, layer=c["layer"].value, mask=mask,
                          teacher_rgb=t_rgb, student_rgb=student_rgb, cosine=cosine,
                          mean_cosine=mean_cos, png=png)
        self.set_readout({"mean cosine at hidden patches": mean_cos,
                          "mask ratio": self.ratio})


def token_map_viewer(run=None, dataset=None, **options) -> TokenMapViewer:
    """For one image: PCA of token features to RGB (fitted on the teacher's tokens, applied to
    both) for the reconstruction teacher's tokens and the student's predictions at hidden
    positions, a per-patch cosine-similarity heatmap, and a teacher layer selector.
    options: index, layer ('target' or a block number as a string), seed, ratio."""
    return build(TokenMapViewer, run, dataset, **options)


# --- 3. pseudo-label clusters --------------------------------------------------------------

# the cluster scores (plaml_lab.probes.nmi_ari) as the readout names them
SCORE_LABELS = {"nmi": "NMI", "ari": "ARI", "ami": "AMI (NMI corrected for chance)",
                "nmi_shuffled": "NMI with shuffled labels (chance level)"}


class ClusterExplorer(_ImageApp):
    """state: index, patch_labels (L,) data-token pseudo labels of the picked image (or None),
    cluster_map (L, 3) their colours, image_label, prototype, gallery_indices (dataset indices
    of images whose class token falls in the prototype), counts (K,) images per prototype,
    embedding ('pca' | 'tsne'), colour_by, xy (N, 2), colour (N,) the scatter's labels,
    scores {nmi, ari}, png_map, png_gallery; figures: views['usage'].figure,
    views['embedding'].figure."""

    app_name = "cluster-explorer"

    def __init__(self, run=None, dataset=None, index: int = 0, max_images: int = 512,
                 embedding: str = "pca", colour_by: str = "pseudo label",
                 gallery_size: int = 16, tsne_in_background: bool = True):
        super().__init__("Pseudo-label clusters of the labelling teacher", run, dataset, index)
        if self.run.model.labelling_teacher is None:
            self.unavailable(f"method.pseudo_labels={self.cfg.method.pseudo_labels}: this run "
                             "has no labelling teacher, so no pseudo labels")
            return
        self.indices = probe_indices(self.dataset, int(max_images))  # every class in proportion
        n = len(self.indices)
        self.controls["image"].max = n - 1
        batch = I.fetch(self.dataset, self.indices)
        self.images = batch["image"]
        self.labels = batch["label"].numpy()
        self.pl = I.pseudo_labels(self.run, self.images)
        self.k = self.cfg.pl.num_prototypes
        self.image_labels = self.pl["image"].numpy()
        self.counts = np.bincount(self.image_labels, minlength=self.k)
        self.scores = nmi_ari(self.image_labels, self.labels)
        self.gallery_size = gallery_size
        self._xy: dict[str, np.ndarray] = {}
        self.embed_seconds: dict[str, float] = {}
        self._tsne_thread = None
        used = np.argsort(-self.counts, kind="stable")
        used = used[self.counts[used] > 0]
        opts = [(f"#{k} ({self.counts[k]} images)", int(k)) for k in used]
        self.control("prototype", dropdown("prototype", opts, opts[0][1]), ("prototype",))
        self.control("embedding", dropdown("embedding", [("PCA", "pca"), ("t-SNE", "tsne")],
                                           embedding), ("scatter",))
        self.control("colour_by", dropdown("colour by", ["pseudo label", "true label"],
                                           colour_by), ("scatter",))
        self._redraws["image"] = ("map",)  # the picked image only changes its cluster map
        self.gallery = self.view("gallery", ImageView("gallery"))
        self.usage = self.view("usage", PlotlyView("usage"))
        self.embedding = self.view("embedding", PlotlyView("embedding"))
        # gallery and usage side by side where the output is wide enough, else the usage
        # chart wraps below the gallery (a plain HBox cut it off on the right)
        self.finish([self.figure, widgets.HBox([self.gallery, self.usage],
                                               layout=widgets.Layout(flex_flow="row wrap")),
                     self.embedding])
        if tsne_in_background and embedding != "tsne":
            # t-SNE takes seconds: start it once the app is drawn, so that the PCA -> t-SNE
            # switch a user makes later finds it ready
            self._tsne_thread = threading.Thread(target=self.xy, args=("tsne",), daemon=True,
                                                 name="plaml-tsne")
            self._tsne_thread.start()

    def xy(self, method: str) -> np.ndarray:
        """The 2-D embedding, computed once per app and method."""
        thread = self._tsne_thread
        if method == "tsne" and thread is not None and thread is not threading.current_thread():
            thread.join()
        if method not in self._xy:
            t0 = time.perf_counter()
            self._xy[method] = I.embed_2d(self.pl["features"], method)
            self.embed_seconds[method] = time.perf_counter() - t0
        return self._xy[method]

    def _render(self, parts: set[str]) -> None:
        c = self.controls
        if wants(parts, "map"):
            self._render_map(c["image"].value)
        if wants(parts, "prototype"):
            self._render_prototype(c["prototype"].value)
        if wants(parts, "prototype", "scatter"):
            self._render_scatter(c["embedding"].value, c["colour_by"].value)
        self.set_readout({"images": len(self.images),
                          "prototypes used": f"{int((self.counts > 0).sum())} / {self.k}",
                          **{SCORE_LABELS.get(k, k): v for k, v in self.scores.items()},
                          "labels from": "class token" if self.cfg.pl_cls
                          else "most frequent data-token label"})

    def _render_map(self, i: int) -> None:
        img = self.images[i]
        patch = self.pl.get("patch")
        items = [(f"image {i} (true label {self.labels[i]})", F.image_hwc(img))]
        cmap = None
        if patch is not None:
            cmap = F.label_map(patch[i], self.k)
            over = 0.45 * F.image_hwc(img) + 0.55 * self.on_grid(cmap)
            items += [("data-token pseudo labels", self.on_grid(cmap)), ("overlay", over)]
        lab = int(self.image_labels[i])
        swatch = np.broadcast_to(F.prototype_colors(self.k)[lab], F.image_hwc(img).shape)
        items.append((f"image pseudo label #{lab}", np.ascontiguousarray(swatch)))
        png = self.figure.show(C.compose(items, panel=128))
        self.state.update(index=i, patch_labels=None if patch is None else patch[i].numpy(),
                          cluster_map=cmap, image_label=lab, png_map=png)

    def _render_prototype(self, k: int) -> None:
        members = np.flatnonzero(self.image_labels == k)
        shown = members[:self.gallery_size]
        png = self.gallery.show(C.gallery(self.images[shown], [str(j) for j in shown], ncols=8))
        self.usage.show(P.usage_histogram(self.counts, selected=k))
        self.state.update(prototype=k, gallery_indices=shown, counts=self.counts,
                          png_gallery=png)

    def _render_scatter(self, method: str, colour_by: str) -> None:
        xy = self.xy(method)
        colour = self.image_labels if colour_by == "pseudo label" else self.labels
        name = {"pca": "PCA", "tsne": "t-SNE"}.get(method, method)
        fig = P.embedding_scatter(xy, colour, colour_by, self.image_labels, self.labels,
                                  title=f"class tokens ({name}), coloured by {colour_by}",
                                  highlight=self.image_labels == self.controls["prototype"].value,
                                  axis_name=name)
        self.embedding.show(fig)
        self.state.update(embedding=method, colour_by=colour_by, xy=xy, colour=colour,
                          scores=self.scores)


def cluster_explorer(run=None, dataset=None, **options) -> ClusterExplorer:
    """Pseudo-label clusters of the labelling teacher over `max_images` images (the clusters
    probe's: all, or a fixed-seed sample stratified by class): per-image data-token cluster
    maps (a colour per prototype), a gallery of the images whose class token falls in a chosen
    prototype, a prototype usage histogram, a 2-D embedding (PCA or t-SNE; hover shows the
    image index) coloured by pseudo or true label, NMI / ARI.
    options: index, max_images (512), embedding, colour_by, gallery_size, tsne_in_background
    (True: t-SNE is computed in a thread once the app is drawn)."""
    return build(ClusterExplorer, run, dataset, **options)


# --- 4. attention --------------------------------------------------------------------------

class AttentionViewer(_ImageApp):
    """state: index, layer (1-based), head ('mean' or an int), student_view ('full' |
    'masked'), maps {encoder name: (g, g) class-token-to-patch attention, NaN on patches the
    student did not see}, png."""

    app_name = "attention-viewer"

    def __init__(self, run=None, dataset=None, index: int = 0, layer: int | None = None,
                 head="mean", student_view: str = "full", seed: int = 0):
        super().__init__("Class-token attention: student and teachers", run, dataset, index)
        depth, heads = self.cfg.model.depth, self.cfg.model.num_heads
        self.encoders = ["student"] + [f"{n} teacher" for n in self.run.model.teachers]
        self.seed = seed
        self._cache: dict[tuple, dict[str, torch.Tensor]] = {}
        self.control("layer", dropdown("layer", [(f"block {i}", i) for i in range(1, depth + 1)],
                                       depth if layer is None else int(layer)), ("draw",))
        self.control("head", dropdown("head", [("mean of heads", "mean")]
                                      + [(f"head {h}", h) for h in range(heads)], head),
                     ("draw",))
        self.control("student_view", dropdown("student sees", [("full image", "full"),
                                                               ("masked view", "masked")],
                                              student_view))
        self.finish([self.figure])

    def attention(self, index: int, view: str) -> dict[str, torch.Tensor]:
        """{encoder: (depth, heads, L)} for one image; cached, as layer / head only re-draw."""
        key = (index, view)
        if key not in self._cache:
            x = normalize(I.fetch(self.dataset, [index])["image"])
            out = {}
            for name in self.encoders:
                which = name.split(" ")[0]
                ids_keep = None
                if name == "student" and view == "masked":
                    noise = I.mask_noise(self.num_patches, self.cfg.mask.strategy, self.seed,
                                         self.cfg.mask.block_size)
                    ids_keep = mask_from_noise(noise, self.cfg.mask.ratio)[0]
                out[name] = cls_attention(self.run.encoder(which), x, ids_keep)[:, 0]
            self._cache = {key: out}  # one image at a time: memory stays flat
        return self._cache[key]

    def _render(self, parts: set[str]) -> None:
        c = self.controls
        att = self.attention(c["image"].value, c["student_view"].value)
        layer, head = c["layer"].value, c["head"].value
        img = self.image()
        maps = {}
        for name, a in att.items():
            per_head = a[layer - 1]  # (heads, L)
            m = per_head.mean(0) if head == "mean" else per_head[int(head)]
            maps[name] = m.reshape(self.grid, self.grid).numpy()
        items = [("image", F.image_hwc(img))]
        items += [(name, maps[name]) for name in self.encoders]
        head_label = "mean of heads" if head == "mean" else f"head {head}"
        # one colour scale for every panel: a colour means the same weight in each encoder
        vmax = max((float(np.nanmax(m)) for m in maps.values() if np.isfinite(m).any()),
                   default=1.0)
        fig = C.compose(items, cmap="inferno", vmin=0.0, vmax=vmax,
                       title=f"class token -> patches, block {layer}, {head_label}; one colour "
                       f"scale, 0 to {vmax:.3g}")
        png = self.figure.show(fig)
        self.state.update(index=c["image"].value, layer=layer, head=head,
                          student_view=c["student_view"].value, maps=maps, vmax=vmax, png=png)
        self.set_readout({f"{n} max": float(np.nanmax(m)) for n, m in maps.items()})


def attention_viewer(run=None, dataset=None, **options) -> AttentionViewer:
    """Layer and head selectors (and 'mean of heads'); class-token-to-patch attention over the
    image for the student and each teacher side by side. The student sees the full image or its
    masked training view. Weights are captured with timm's fused attention switched off only
    inside the viewer (viz/attention.py). options: index, layer, head, student_view, seed."""
    return build(AttentionViewer, run, dataset, **options)


APPS = {"mask_explorer": mask_explorer, "token_map_viewer": token_map_viewer,
        "cluster_explorer": cluster_explorer, "attention_viewer": attention_viewer,
        "training_monitor": training_monitor, "teacher_compare": teacher_compare}
