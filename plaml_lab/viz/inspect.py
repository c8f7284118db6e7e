"""What the dashboards show, computed from a Run: masks and reconstructions, token maps,
pseudo labels and their clusters, teacher-vs-student distances. No widgets, no figures.

Every function runs the model in eval mode under no_grad: PLAML only moves its DINO centers in
training mode, so inspecting a run never changes it. Images are (N, 3, H, W) in [0, 1] as the
datasets return them; normalisation happens here, as in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from plaml_lab import schedules
from plaml_lab.config import PretrainConfig
from plaml_lab.data import build_dataset, get_items, normalize, steps_per_epoch, unnormalize
from plaml_lab.method import PLAML, losses
from plaml_lab.method.masking import num_visible, sample_noise
from plaml_lab.paths import shipped_file
from plaml_lab.runs import Run, load_run, random_init_run
from plaml_lab.runs.checkpoint import CheckpointError, load_checkpoint

def default_preset() -> Path | None:
    """The lab preset (experiments/configs/lab.yaml, or the package's copy), else quick.yaml,
    else None (the config defaults)."""
    for name in ("lab.yaml", "quick.yaml"):
        found = shipped_file(name)
        if found is not None:
            return found
    return None


def resolve_run(run: Run | str | Path | None) -> Run:
    """A Run, a run folder / checkpoint path, or None (a random-init model of the lab preset)."""
    if run is None:
        return random_init_run(default_preset())
    if isinstance(run, Run):
        return run
    return load_run(run)


def resolve_dataset(run: Run, dataset=None):
    """None: the run's own dataset, held-out split (fixed, never trained on); 'train' / 'val':
    that split of the run's dataset; anything else is used as given (a Dataset)."""
    if dataset is None or isinstance(dataset, str):
        return build_dataset(run.cfg.data, run.cfg.model.img_size, dataset or "val")
    return dataset


fetch = get_items  # dashboards and notebooks call it by this name


# --- masking ---------------------------------------------------------------------------------

def mask_noise(num_patches: int, strategy: str, seed: int, block_size: int = 2) -> torch.Tensor:
    """(1, L) noise of a masking strategy drawn from `seed` (masking.sample_noise, the sampler
    training uses): the same seed gives the same mask order at every ratio, so a higher ratio
    hides a superset of the patches."""
    return sample_noise(1, num_patches, strategy, block_size,
                        generator=torch.Generator().manual_seed(int(seed)))


def ratio_bounds(num_patches: int, step: float = 0.05) -> tuple[float, float]:
    """The smallest and largest ratio on a `step` grid that hide >= 1 and keep >= 1 patch."""
    grid = np.round(np.arange(step, 1.0, step), 4)
    ok = [r for r in grid if 1 <= num_visible(num_patches, r) < num_patches]
    return float(ok[0]), float(ok[-1])


@torch.no_grad()
def reconstruct(run: Run, image: torch.Tensor, ratio: float, strategy: str = "random",
                seed: int = 0) -> dict:
    """One image (3, H, W) through PLAML with a seeded mask.

    Returns mask (L,) 1 = hidden; ids_masked (M,); loss parts of this one image; and by mode:
    pixels: recon (3, H, W) in [0, 1], the prediction with each hidden patch un-normalised by
    the true patch's mean and std (MAE's visualisation of a norm_pix_loss model);
    tokens: pred_tokens (M, D) and teacher_rec (M, D) at the hidden positions."""
    cfg = run.cfg
    model = run.model.eval()
    s = model.student
    x = normalize(image[None].float())
    noise = mask_noise(s.num_patches, strategy, seed, cfg.mask.block_size)
    out = model([x], cfg.pl.teacher_temp, patch_teacher_temp=model.final_temp("patch"),
                mask_ratio=float(ratio), noise=noise,
                return_details=True)
    res = {"mask": out["mask"][0], "ids_masked": out["ids_masked"][0]}
    res.update({k: float(out[k]) for k in ("loss", "loss_rec", "loss_cls", "loss_patch")})
    if "pred_pixels" in out:
        pred = out["pred_pixels"].float()
        if cfg.rec.norm_pix_loss:
            target = losses.patchify(x, s.patch_size)
            mean = target.mean(-1, keepdim=True)
            std = (target.var(-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred * std + mean
        recon = losses.unpatchify(pred, s.patch_size, s.in_chans)
        res["recon"] = unnormalize(recon)[0]
    if "pred_tokens" in out:
        res["pred_tokens"] = out["pred_tokens"][0].float()
    if "teacher_rec" in out:
        res["teacher_rec"] = out["teacher_rec"][0].float()
    return res


# --- token maps ------------------------------------------------------------------------------

def teacher_layer_options(cfg: PretrainConfig) -> list[tuple[str, str]]:
    """(label, key) pairs of the reconstruction teacher's layer selector: 'target' (what the
    student is trained to predict: the mean of the last rec.target_layers blocks) and each block."""
    k = cfg.rec.target_layers
    label = "target (last block)" if k == 1 else f"target (mean of last {k} blocks)"
    return [(label, "target")] + [(f"block {i}", str(i)) for i in range(1, cfg.model.depth + 1)]


@torch.no_grad()
def teacher_tokens(run: Run, images: torch.Tensor, layer: str = "target",
                   which: str = "reconstruction") -> torch.Tensor:
    """A teacher's data tokens for full images (N, 3, H, W) -> (N, L, D), normalised as the
    reconstruction targets are (rec.target_norm). layer: 'target' or a 1-based block number."""
    cfg = run.cfg
    enc = run.encoder(which)
    _, layers = enc.forward_features(normalize(images.float()), return_layers=cfg.model.depth)
    data = [t[:, 1:] for t in layers]
    if layer == "target":
        return losses.token_targets(data[-cfg.rec.target_layers:], cfg.rec.target_norm)
    i = int(layer)
    if not 1 <= i <= len(data):
        raise ValueError(f"layer={layer!r}: blocks are 1..{len(data)}")
    return losses.normalize_target_layer(data[i - 1], cfg.rec.target_norm)


def cosine_per_patch(pred: torch.Tensor, target: torch.Tensor, ids: torch.Tensor,
                     num_patches: int) -> np.ndarray:
    """Cosine similarity of predicted and target tokens (M, D) at positions ids (M,) -> (L,),
    NaN where nothing was predicted (visible patches)."""
    out = np.full(num_patches, np.nan, dtype=np.float32)
    cos = torch.nn.functional.cosine_similarity(pred.float(), target.float(), dim=-1)
    out[ids.cpu().numpy()] = cos.cpu().numpy()
    return out


# --- pseudo labels ---------------------------------------------------------------------------

@torch.no_grad()
def pseudo_labels(run: Run, images: torch.Tensor, encoder: str = "labelling",
                  batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The labelling teacher's heads on the class token and the data tokens of full images.

    encoder: whose tokens feed the heads ('labelling', 'reconstruction' or 'student'); the heads
    are always the labelling teacher's, so two encoders' labels are directly comparable.
    Returns features (N, D) class tokens; cls (N,) class-token pseudo labels (absent without
    cls pseudo labels); patch (N, L) data-token pseudo labels (absent without patch pseudo
    labels); image (N,) one label per image: cls, else the most frequent data-token label."""
    cfg = run.cfg
    teacher = run.model.labelling_teacher
    if teacher is None or teacher.heads is None:
        raise ValueError(f"method.pseudo_labels={cfg.method.pseudo_labels!r}: this run has no "
                         "labelling teacher, so no pseudo labels")
    enc = run.encoder(encoder)
    feats, cls_s, patch_s = [], [], []
    for start in range(0, images.shape[0], batch_size):
        tokens = enc(normalize(images[start:start + batch_size].float()))
        feats.append(tokens[:, 0].float())
        if cfg.pl_cls:
            cls_s.append(teacher.heads["cls"](tokens[:, 0]).float())
        if cfg.pl_patch:
            patch_s.append(teacher.heads["patch"](tokens[:, 1:]).float())
    out = {"features": torch.cat(feats)}
    if cls_s:
        out["cls"] = run.model.pseudo_labels(torch.cat(cls_s), "cls")
    if patch_s:
        scores = torch.cat(patch_s)
        n, L, k = scores.shape
        out["patch"] = run.model.pseudo_labels(scores.reshape(n * L, k), "patch").reshape(n, L)
    out["image"] = out["cls"] if "cls" in out else torch.mode(out["patch"], dim=1).values
    return out


def embed_2d(features: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2): PCA (the first two components), or t-SNE (on the first 30 PCA
    components, sklearn, fixed seed)."""
    x = features.double()
    x = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    if method == "pca":
        return (x @ vh[:2].T).numpy()
    if method == "tsne":
        from sklearn.manifold import TSNE  # seconds to import: only a t-SNE view pays
        reduced = (x @ vh[:30].T).numpy()
        perplexity = float(min(30.0, max(2.0, (len(reduced) - 1) / 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed,
                    max_iter=500).fit_transform(reduced)
    raise ValueError(f"method={method!r}: allowed values are pca|tsne")


# --- checkpoints over training --------------------------------------------------------------

def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The periodic checkpoints (step_XXXXXXX.pt) of a run folder, then last.pt."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    paths = sorted(ckpt_dir.glob("step_*.pt"))
    if (ckpt_dir / "last.pt").exists():
        paths.append(ckpt_dir / "last.pt")
    return paths


def _encoder_params(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    # the fixed sin-cos position embedding is identical everywhere and not learned: left out
    return {k[len(prefix):]: v.float() for k, v in state.items()
            if k.startswith(prefix) and not k.endswith("pos_embed")}


def param_distance(state: dict, teacher: str) -> dict[str, float]:
    """||theta_teacher - theta_student|| over the encoder's learned parameters of one model
    state dict: abs (L2 norm), rel (divided by ||theta_student||)."""
    s = _encoder_params(state, "student.encoder.")
    t = _encoder_params(state, f"teachers.{teacher}.encoder.")
    if not t:
        raise KeyError(f"teachers.{teacher}: not in this checkpoint")
    sq = sum(float(((t[k] - s[k]) ** 2).sum()) for k in t)
    norm = sum(float((s[k] ** 2).sum()) for k in t)
    return {"abs": sq ** 0.5, "rel": (sq / max(norm, 1e-30)) ** 0.5}


def checkpoint_history(run_dir: str | Path) -> list[dict]:
    """Every checkpoint of a run (deduplicated by step, in step order) as
    {step, path, state}; state is the model state dict (plain tensors)."""
    by_step: dict[int, dict] = {}
    for path in list_checkpoints(run_dir):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError:
            continue  # a checkpoint being written right now: the others still tell the story
        by_step.setdefault(int(ckpt["step"]), {"step": int(ckpt["step"]), "path": path,
                                               "state": ckpt["model"]})
    return [by_step[k] for k in sorted(by_step)]


def total_steps(cfg: PretrainConfig, metrics: list[dict] = (), summary: dict | None = None
                ) -> int:
    """A run's full schedule length: summary.json's total_steps, else derived from the logged
    epochs (step / epoch = steps per epoch), else from the dataset size (world size 1)."""
    if summary and summary.get("total_steps"):
        return int(summary["total_steps"])
    for row in reversed(list(metrics)):
        if row.get("epoch") and row.get("step"):
            spe = max(1, round(row["step"] / row["epoch"]))
            return max(1, int(round(cfg.optim.epochs * spe)))
    n = len(build_dataset(cfg.data, cfg.model.img_size, "train"))
    spe = steps_per_epoch(n, cfg.optim.batch_size * cfg.optim.accum_steps, 1)
    return max(1, int(round(cfg.optim.epochs * spe)))


def momentum_curves(cfg: PretrainConfig, total: int, points: int = 200) -> dict[str, tuple]:
    """{teacher name: (steps, momenta)} of each teacher's schedule over the whole run, the same
    values training uses (schedules.momentum with the teacher's own start / end)."""
    steps = np.unique(np.linspace(0, total, points).round().astype(int))
    values = [schedules.teacher_momenta(cfg, int(s), total) for s in steps]
    return {name: (steps, np.array([v[name] for v in values])) for name in cfg.teacher_roles}


def run_at(run: Run, entry: dict, model=None) -> Run:
    """The model of one checkpoint_history entry, as a Run sharing `run`'s config (eval mode).
    model: a PLAML of that config to load the weights into (reused across checkpoints: building
    one costs more than loading it)."""
    if model is None:
        model = PLAML.from_config(run.cfg)
    model.load_state_dict(entry["state"], strict=True)
    model.eval()
    return Run(cfg=run.cfg, model=model, path=run.path, step=entry["step"])
