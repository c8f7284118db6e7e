"""Tests for plaml_lab.probes and plaml_lab.evaluate: each probe on synthetic features whose right
answer is known, pinned to independent computations (sklearn, explicit loops), and every probe
through `plaml-lab eval` on a quick run and on --random-init."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from plaml_lab import probes as P
from plaml_lab.cli import main as cli_main
from plaml_lab.data import normalize
from plaml_lab.evaluate import PROBES, eval_splits, extract_features, knn_accuracy
from plaml_lab.runs import load_run

QUICK = "experiments/configs/quick.yaml"
TINY = ["run.progress=false", "run.num_threads=1", "data.num_train=192", "data.num_val=96",
        "eval.max_train=192", "eval.max_val=96"]


def separable(n_per_class: int = 30, num_classes: int = 4, dim: int = 16, seed: int = 0):
    """Class c = a tight cloud around 10 * e_c: perfectly separable (linear and cosine)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = 10 * torch.eye(dim)[y] + 0.1 * torch.randn(len(y), dim, generator=g)
    return x, y


# --- kNN and linear ---------------------------------------------------------------------------

def test_knn_accuracy_is_one_on_separable_features():
    x, y = separable()
    xt, yt = separable(seed=1)
    assert knn_accuracy(x, y, xt, yt, k=20, temperature=0.07) == 1.0


def test_knn_accuracy_is_chance_when_features_ignore_labels():
    x, _ = separable()
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (len(x),), generator=g)
    yt = torch.randint(0, 4, (len(x),), generator=g)
    assert knn_accuracy(x, y, x, yt, k=20) < 0.5


def test_linear_probe_accuracy_is_one_on_separable_features():
    x, y = separable()
    xt, yt = separable(seed=1)
    assert P.linear_probe_accuracy(x, y, xt, yt, 4) == 1.0


def test_softmax_regression_matches_sklearn_logistic_regression_weights():
    # Same objective: sklearn minimises C * sum CE + ||W||^2 / 2, ours mean CE + l2 ||W||^2 / 2,
    # equal for l2 = 1 / (C N); neither penalises the intercept.
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    n, d, k = 300, 8, 3
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.randn(n, d, generator=g) + torch.randn(k, d, generator=g)[y]
    C = 0.5
    w, b = P.fit_softmax_regression(x, y, k, l2=1.0 / (C * n), max_iter=500, tol=1e-9)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(x.numpy(), y.numpy())
    # sklearn's multinomial solution is defined up to a shift shared by all classes
    ours = (w - w.mean(0)).numpy(), (b - b.mean()).numpy()
    theirs = ref.coef_ - ref.coef_.mean(0), ref.intercept_ - ref.intercept_.mean()
    np.testing.assert_allclose(ours[0], theirs[0], atol=2e-3)
    np.testing.assert_allclose(ours[1], theirs[1], atol=2e-3)


def test_standardize_uses_training_statistics_only():
    tr = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    te = torch.tensor([[1.0, 20.0]])
    tr_z, te_z = P.standardize(tr, te)
    assert torch.allclose(te_z, torch.zeros(1, 2))
    assert torch.allclose(tr_z.std(0), torch.ones(2))


# --- clusters -----------------------------------------------------------------------------------

def test_constant_assignment_gives_nmi_zero_one_prototype_perplexity_one():
    labels = torch.arange(5).repeat(8)
    m = P.cluster_metrics(torch.full((40,), 7), labels, num_prototypes=16)
    assert m["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert m["ari"] == pytest.approx(0.0, abs=1e-12)
    assert m["prototypes_used"] == 1
    assert m["assignment_perplexity"] == pytest.approx(1.0)


def test_relabelled_true_classes_give_nmi_ari_one_and_perplexity_num_classes():
    labels = torch.arange(5).repeat(8)
    assign = (labels * 3 + 2) % 16  # a one-to-one renaming of the classes
    m = P.cluster_metrics(assign, labels, num_prototypes=16)
    assert m["nmi"] == pytest.approx(1.0)
    assert m["ari"] == pytest.approx(1.0)
    assert m["prototypes_used"] == 5
    assert m["assignment_perplexity"] == pytest.approx(5.0)


def test_assignment_perplexity_is_exp_entropy_of_histogram():
    assign = torch.tensor([0, 0, 0, 1, 2, 2])
    p = np.array([3, 1, 2]) / 6
    m = P.cluster_metrics(assign)
    assert m["assignment_perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert "nmi" not in m  # no labels, no NMI


# --- dense targets --------------------------------------------------------------------------------

def test_patch_majority_labels_match_a_loop_over_patches():
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (3, 8, 8), generator=g)
    got = P.patch_majority_labels(masks, 4, 4)
    for n in range(3):
        for r in range(2):
            for c in range(2):
                patch = masks[n, 4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(-1)
                counts = torch.bincount(patch, minlength=4)
                assert got[n, r * 2 + c] == int(np.argmax(counts.numpy()))  # first max wins


def test_patch_objectness_is_at_least_half_object_pixels():
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, 0, :2] = 3  # top-left patch: 2 of 4 pixels -> object
    masks[0, 0, 2] = 3  # top-right patch: 1 of 4 -> background
    assert P.patch_objectness(masks, 2).tolist() == [[1, 0, 0, 0]]


def test_segmentation_scores_match_hand_computation():
    target = torch.tensor([[[0, 0], [1, 1]]])
    pred = torch.tensor([[[0, 1], [1, 1]]])
    s = P.segmentation_scores(pred, target, 3)  # class 2 absent: not averaged
    # class 0: tp 1, union 2 -> 0.5; class 1: tp 2, union 3 -> 2/3
    assert s["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert s["pixel_acc"] == pytest.approx(0.75)
    assert s["iou_per_class"][2] is None


def _patch_aligned_scene(n: int, seed: int, grid: int = 4, patch: int = 4, num_classes: int = 3):
    """Images with one patch-aligned rectangle of class c: masks (n, H, W), boxes (n, 4) and
    data tokens (n, L, D) that one-hot encode each patch's class (+ noise)."""
    g = torch.Generator().manual_seed(seed)
    size = grid * patch
    masks = torch.zeros(n, size, size, dtype=torch.long)
    boxes = torch.zeros(n, 4)
    for i in range(n):
        r0, c0 = torch.randint(0, grid - 1, (2,), generator=g).tolist()
        r1 = r0 + 1 + int(torch.randint(0, grid - r0 - 1, (1,), generator=g))
        c1 = c0 + 1 + int(torch.randint(0, grid - c0 - 1, (1,), generator=g))
        cls = 1 + i % num_classes
        masks[i, r0 * patch:(r1 + 1) * patch, c0 * patch:(c1 + 1) * patch] = cls
        boxes[i] = torch.tensor([c0 * patch, r0 * patch, (c1 + 1) * patch, (r1 + 1) * patch])
    onehot = torch.eye(num_classes + 1)[P.patch_majority_labels(masks, patch, num_classes + 1)]
    feats = torch.cat([onehot, 0.05 * torch.randn(n, grid * grid, 4, generator=g)], -1)
    return feats, masks, boxes


def test_seg_probe_is_perfect_when_tokens_encode_patch_class():
    tr, tr_m, _ = _patch_aligned_scene(40, 0)
    te, te_m, _ = _patch_aligned_scene(20, 1)
    s = P.seg_probe(tr, tr_m, te, te_m, patch_size=4, num_seg_classes=4)
    assert s["seg_miou"] == pytest.approx(1.0)
    assert s["seg_pixel_acc"] == pytest.approx(1.0)


def test_box_iou_of_known_boxes():
    a = torch.tensor([[0.0, 0, 4, 4], [0, 0, 2, 2], [0, 0, 1, 1]])
    b = torch.tensor([[2.0, 0, 6, 4], [0, 0, 2, 2], [5, 5, 6, 6]])
    assert P.box_iou(a, b).tolist() == pytest.approx([8 / 24, 1.0, 0.0])


def test_boxes_from_objectness_bounds_patches_above_threshold_else_argmax():
    prob = torch.zeros(2, 16)
    prob[0, [5, 6, 10]] = 0.9  # rows 1-2, cols 1-2 of a 4x4 grid
    prob[1, 15] = 0.3  # nothing above 0.5: the most object-like patch
    boxes = P.boxes_from_objectness(prob, patch_size=4)
    assert boxes.tolist() == [[4, 4, 12, 12], [12, 12, 16, 16]]


def test_box_probe_is_perfect_when_tokens_encode_objectness():
    tr, tr_m, _ = _patch_aligned_scene(40, 0)
    te, _, te_b = _patch_aligned_scene(20, 1)
    s = P.box_probe(tr, tr_m, te, te_b, patch_size=4)
    assert s["box_mean_iou"] == pytest.approx(1.0)
    assert s["box_iou50"] == 1.0


# --- feature extraction -----------------------------------------------------------------------

def test_extract_features_keeps_data_tokens_for_the_first_sampled_items_only():
    from plaml_lab.evaluate import eval_splits
    from plaml_lab.runs import random_init_run

    run = random_init_run(QUICK, TINY)
    _, val = eval_splits(run.cfg)
    f = extract_features(run.encoder(), val, batch_size=32, max_items=70, keep_patches=True,
                         patch_items=40)
    assert f["cls"].shape == (70, 32) and f["patches"].shape == (40, 16, 32)
    assert f["masks"].shape == (70, 16, 16) and f["boxes"].shape == (70, 4)
    with torch.no_grad():
        full = run.encoder()(normalize(val.get_batch(f["index"][:40])["image"]))
    assert torch.allclose(f["patches"], full[:, 1:], atol=1e-5)
    assert torch.allclose(f["mean"][:40], full[:, 1:].mean(1), atol=1e-5)


# --- through the CLI --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from plaml_lab.train import pretrain

    out = tmp_path_factory.mktemp("eval") / "run"
    pretrain(QUICK, out, TINY + ["run.max_steps=3", "run.eval_knn=false"])
    return out


def _eval(argv, capsys) -> tuple[int, dict | str]:
    code = cli_main(["eval", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


ALL_METRICS = ("knn_top1", "knn_top1_mean", "linear_top1", "linear_top1_mean", "nmi", "ari",
               "prototypes_used", "assignment_perplexity", "seg_miou", "seg_pixel_acc",
               "box_mean_iou", "box_iou50")


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_eval_cli_prints_one_json_object_with_every_probe_on_a_quick_run(quick_run, capsys):
    code, result = _eval(["--checkpoint", str(quick_run), *TINY], capsys)
    assert code == 0
    assert result["probes"] == list(PROBES) and result["step"] == 3
    for key in ALL_METRICS:
        assert key in result and math.isfinite(result[key]), key
    assert 1 <= result["prototypes_used"] <= 32
    assert "notes" not in result
    # kNN of the class token, recomputed here: the encoder on the same splits, DINO's weighted
    # vote written out in numpy
    run = load_run(quick_run, TINY)
    train_set, val_set = eval_splits(run.cfg)
    e = run.cfg.eval

    def cls_tokens(ds, n):
        batch = ds.get_batch(torch.arange(min(n, len(ds))))
        with torch.no_grad():
            return run.encoder()(normalize(batch["image"]))[:, 0].double().numpy(), \
                batch["label"].numpy()

    xtr, ytr = cls_tokens(train_set, e.max_train)
    xte, yte = cls_tokens(val_set, e.max_val)
    xtr /= np.linalg.norm(xtr, axis=1, keepdims=True)
    xte /= np.linalg.norm(xte, axis=1, keepdims=True)
    sim = xte @ xtr.T
    votes = np.zeros((len(xte), int(ytr.max()) + 1))
    for i, row in enumerate(sim):
        for j in np.argsort(-row)[:e.knn_k]:
            votes[i, ytr[j]] += np.exp(row[j] / e.knn_t)
    assert result["knn_top1"] == pytest.approx(float((votes.argmax(1) == yte).mean()), abs=1e-9)


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_eval_cli_random_init_runs_every_probe_and_differs_from_trained(quick_run, capsys):
    _, trained = _eval(["--checkpoint", str(quick_run), *TINY], capsys)
    code, result = _eval(["--checkpoint", str(quick_run), "--random-init", *TINY], capsys)
    assert code == 0 and result["random_init"] and result["step"] == 0
    for key in ALL_METRICS:
        assert math.isfinite(result[key]), key
    assert any(result[k] != trained[k] for k in ALL_METRICS)  # another encoder was probed


def test_eval_cli_teacher_encoder(quick_run, capsys):
    code, result = _eval(["--checkpoint", str(quick_run), "--encoder", "labelling",
                          "--probes", "knn", *TINY], capsys)
    assert code == 0 and result["encoder"] == "labelling" and "knn_top1" in result


def test_eval_reports_clusters_not_applicable_without_pseudo_labels(capsys):
    code, result = _eval(["--random-init", "--config", QUICK, "--probes", "clusters,knn",
                          "method.target=pixels", "method.pseudo_labels=none", *TINY], capsys)
    assert code == 0 and "nmi" not in result and "knn_top1" in result
    assert result["notes"]["clusters"].startswith("not applicable")


def test_eval_reports_seg_and_box_not_applicable_without_masks(capsys):
    code, result = _eval(["--random-init", "--config", QUICK, "--probes", "seg,box,linear",
                          "data.dataset=digits", *TINY], capsys)
    assert code == 0 and "linear_top1" in result and "seg_miou" not in result
    assert "no masks" in result["notes"]["seg"] and "no masks" in result["notes"]["box"]


@pytest.mark.parametrize("argv, needle", [
    (["--checkpoint", "nope/run"], "nope/run"),
    (["--random-init", "--config", QUICK, "--probes", "knn,bogus"], "bogus"),
    (["--random-init"], "--checkpoint"),
])
def test_eval_cli_bad_input_exits_2_with_one_line(argv, needle, capsys):
    code, err = _eval(argv, capsys)
    assert code == 2 and err.startswith("error:") and needle in err
    assert len(err.strip().splitlines()) == 1


def test_nmi_is_reported_with_its_chance_floor_and_ami_corrects_it():
    from plaml_lab.probes import nmi_ari
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (2000,), generator=g)
    perfect = nmi_ari(labels, labels)
    assert perfect["nmi"] == pytest.approx(1.0) and perfect["ami"] == pytest.approx(1.0)
    assert perfect["nmi_shuffled"] < 0.05
    # 128 clusters that know nothing of the labels still score an NMI well above 0 ...
    noise = nmi_ari(torch.randint(0, 128, (2000,), generator=g), labels)
    assert noise["nmi"] > 0.04 and abs(noise["nmi"] - noise["nmi_shuffled"]) < 0.02
    assert abs(noise["ami"]) < 0.01  # ... which AMI does not


def test_nuisance_factors_read_polarity_grey_level_and_area_off_the_pixels():
    from plaml_lab.probes import nuisance_factors
    n, size = 40, 16
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        r = 2 + i % 6  # object half-width grows with i % 6
        masks[i, 8 - r:8 + r, 8 - r:8 + r] = 1
    fg_level = torch.linspace(0.05, 0.95, n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    fg, bg = fg_level.view(n, 1, 1), (1 - fg_level).view(n, 1, 1)  # object brighter iff fg > 0.5
    grey = torch.where(masks > 0, fg, bg)
    images = (grey[:, None].expand(-1, 3, -1, -1) * 255).round().to(torch.uint8)
    f = nuisance_factors(images, masks)
    assert torch.equal(f["polarity"], (fg_level > 0.5).long())
    for name, value in (("fg_grey", fg_level), ("bg_grey", 1 - fg_level),
                        ("area", (masks > 0).flatten(1).float().mean(1))):
        order = torch.argsort(value)
        assert torch.all(f[name][order].diff() >= 0), name  # equal-count bins follow the value
    assert f["fg_grey"].unique().numel() == 5  # 5 bins
