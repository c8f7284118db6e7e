"""Losses as pure functions, pinned to independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plaml_lab.method import losses
from plaml_lab.method.schedules import cosine_schedule, linear_warmup, momentum, warmup_cosine


def _hand_mae_loss(pred, imgs, mask, p):
    """Reference MAE forward_loss written with explicit loops in numpy (float64)."""
    imgs, pred, mask = imgs.double().numpy(), pred.double().numpy(), mask.double().numpy()
    n, c, h, w = imgs.shape
    gh, gw = h // p, w // p
    num, den = 0.0, 0.0
    for i in range(n):
        for a in range(gh):
            for b in range(gw):
                l = a * gw + b
                # 'nchpwq->nhwpqc': pixel order within a patch is (row p, col q, channel c)
                patch = np.array([imgs[i, ch, a * p + pi, b * p + qi]
                                  for pi in range(p) for qi in range(p) for ch in range(c)])
                t = (patch - patch.mean()) / (patch.var(ddof=1) + 1e-6) ** 0.5
                err = ((pred[i, l] - t) ** 2).mean()
                num += err * mask[i, l]
                den += mask[i, l]
    return num / den


def test_pixel_loss_equals_independent_hand_computation():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2, 3, 4, 4, generator=g)
    pred = torch.randn(2, 4, 2 * 2 * 3, generator=g)
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 1]]).float()
    ours = losses.pixel_loss(pred, imgs, mask, patch_size=2, norm_pix=True)
    assert abs(float(ours) - _hand_mae_loss(pred, imgs, mask, 2)) < 1e-5


def test_patchify_order_and_inverse():
    imgs = torch.arange(2 * 3 * 4 * 4).float().reshape(2, 3, 4, 4)
    x = losses.patchify(imgs, 2)
    assert x.shape == (2, 4, 12)
    # first patch, first pixel: channels 0,1,2 of pixel (0,0) come first (channel-last)
    assert x[0, 0, :3].tolist() == [imgs[0, 0, 0, 0].item(), imgs[0, 1, 0, 0].item(),
                                    imgs[0, 2, 0, 0].item()]
    assert torch.equal(losses.unpatchify(x, 2, 3), imgs)


def test_token_losses_zero_at_target_and_known_values_elsewhere():
    t = torch.randn(2, 5, 8)
    for kind in ("mse", "smooth_l1", "cosine"):
        assert float(losses.token_loss(t, t, kind)) < 1e-6
    # an offset of 1 in every dimension: mse 1; smooth L1 (beta 1) 0.5 per element
    assert abs(float(losses.token_loss(t + 1, t, "mse")) - 1.0) < 1e-6
    assert abs(float(losses.token_loss(t + 1, t, "smooth_l1")) - 0.5) < 1e-6
    # cosine: 1 - cos, so opposite tokens cost 2, orthogonal ones 1, and scale is ignored
    assert abs(float(losses.token_loss(-t, t, "cosine")) - 2.0) < 1e-6
    assert float(losses.token_loss(3 * t, t, "cosine")) < 1e-6
    e = torch.eye(8)[None, :2]  # two tokens: e0, e1
    assert abs(float(losses.token_loss(e.flip(1), e, "cosine")) - 1.0) < 1e-6


def test_layer_normalised_targets_have_zero_mean_unit_variance_per_token():
    layers = [torch.randn(2, 6, 16) * 3 + 1 for _ in range(3)]
    one = losses.token_targets(layers[:1], "layer")
    assert torch.allclose(one.mean(-1), torch.zeros(2, 6), atol=1e-5)
    assert torch.allclose(one.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-3)
    avg = losses.token_targets(layers, "layer")
    manual = sum(losses.normalize_target_layer(x, "layer") for x in layers) / 3
    assert torch.allclose(avg, manual)


def test_centering_output_sums_to_one_per_token():
    scores = torch.randn(4, 7, 32)
    q = losses.centering_targets(scores, torch.randn(1, 32), temp=0.04)
    assert torch.allclose(q.sum(-1), torch.ones(4, 7), atol=1e-5)
    assert (q >= 0).all()


def test_centering_subtracts_center_before_sharpening():
    scores = torch.tensor([[1.0, 0.0]])
    center = torch.tensor([[1.0, 0.0]])
    q = losses.centering_targets(scores, center, temp=0.1)
    assert torch.allclose(q, torch.tensor([[0.5, 0.5]]))


def test_center_update_is_ema_and_ignores_non_finite_batches():
    c = torch.zeros(1, 3)
    new = losses.center_update(c, torch.ones(1, 3), momentum=0.9)
    assert torch.allclose(new, torch.full((1, 3), 0.1))
    kept = losses.center_update(new, torch.tensor([[float("nan"), 1.0, 1.0]]), 0.9)
    assert kept[0, 0] == new[0, 0] and torch.isclose(kept[0, 1], torch.tensor(0.19))


def test_sinkhorn_output_has_near_uniform_cluster_marginals():
    g = torch.Generator().manual_seed(0)
    # strongly imbalanced scores: most samples prefer prototype 0
    scores = torch.randn(512, 16, generator=g) * 0.1
    scores[:, 0] += 0.5
    q = losses.sinkhorn_knopp(scores, temp=0.1, num_iters=3)
    assert torch.allclose(q.sum(1), torch.ones(512), atol=1e-4)  # rows are distributions
    marg = q.sum(0) / q.sum()
    assert (marg - 1 / 16).abs().max() < 0.2 / 16  # near-uniform usage
    plain = torch.softmax(scores / 0.1, dim=1).mean(0)
    assert plain[0] > 0.5  # without Sinkhorn, prototype 0 would take most mass


# --- the pseudo-label losses against DINO's and SwAV's formulas, written out in float64 numpy --
# (independent of plaml_lab.method.losses: the papers' formulas, not a restatement of the code)

def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _dino_loss(teacher: np.ndarray, student: np.ndarray, center: np.ndarray, t_temp: float,
               s_temp: float) -> float:
    """DINO (Caron et al. 2021, Alg. 1): H(t, s) = -sum p_t log p_s with
    p_t = softmax((t - C) / tau_t), p_s = softmax(s / tau_s), averaged over the batch and over
    every (teacher view, student view) pair of different views; teacher, student (V, B, K)."""
    p_t = _softmax((teacher - center) / t_temp)
    log_p_s = np.log(_softmax(student / s_temp))
    v = teacher.shape[0]
    pairs = [(a, b) for a in range(v) for b in range(v) if a != b] or [(0, 0)]
    return float(np.mean([(-(p_t[a] * log_p_s[b]).sum(-1)).mean() for a, b in pairs]))


def _swav_codes(scores: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """SwAV (Caron et al. 2020, Sec. 3.1 / App. A.1): Q = diag(u) exp(C^T Z / eps) diag(v) in the
    transportation polytope (each of K prototypes gets 1/K of the mass, each of B samples 1/B),
    by Sinkhorn-Knopp's alternating scaling vectors; rows returned as assignments (x B).
    scores (B, K) -> (B, K) rows summing to 1."""
    p = np.exp((scores - scores.max()) / eps).T  # (K, B)
    k, b = p.shape
    u, v = np.ones(k), np.ones(b)
    for _ in range(iters):
        u = (1.0 / k) / (p @ v)
        v = (1.0 / b) / (p.T @ u)
    return (u[:, None] * p * v[None, :]).T * b


def test_pl_cross_entropy_is_the_cross_entropy_of_the_sharpened_student():
    """A hand-worked case: student scores (0, ln 3) at temperature 1 -> p = (1/4, 3/4); a
    uniform target gives 0.5 ln 4 + 0.5 ln 4/3 = 0.5 ln (16/3)."""
    target = torch.tensor([[0.5, 0.5]])
    student = torch.tensor([[0.0, float(np.log(3.0))]])
    assert abs(float(losses.pl_cross_entropy(target, student, 1.0)) - 0.5 * np.log(16 / 3)) < 1e-6
    # temperature divides the scores: (0, 2 ln 3) at 2 is the same case
    assert abs(float(losses.pl_cross_entropy(target, 2 * student, 2.0))
               - 0.5 * np.log(16 / 3)) < 1e-6


def test_class_token_loss_equals_dinos_loss():
    g = torch.Generator().manual_seed(0)
    for views in (1, 2, 3):
        teacher = torch.randn(views, 6, 16, generator=g) * 3
        student = torch.randn(views, 6, 16, generator=g) * 3
        center = torch.randn(1, 16, generator=g)
        ours = losses.cross_view_loss(losses.centering_targets(teacher, center, 0.04), student,
                                      0.1)
        ref = _dino_loss(teacher.double().numpy(), student.double().numpy(),
                         center.double().numpy(), 0.04, 0.1)
        assert abs(float(ours) - ref) < 1e-4 * max(1.0, ref), (views, float(ours), ref)


def test_sinkhorn_equals_swavs_equipartition_codes():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(64, 10, generator=g)
    scores[:, 0] += 1.0  # an imbalanced batch: plain softmax would favour prototype 0
    for iters in (1, 3, 10):
        ours = losses.sinkhorn_knopp(scores, temp=0.1, num_iters=iters).double().numpy()
        ref = _swav_codes(scores.double().numpy(), 0.1, iters)
        assert np.allclose(ours, ref, atol=1e-5), (iters, np.abs(ours - ref).max())


def test_schedules_hit_their_endpoints():
    assert cosine_schedule(0, 100, 0.996, 1.0) == 0.996
    assert abs(cosine_schedule(100, 100, 0.996, 1.0) - 1.0) < 1e-12
    assert abs(cosine_schedule(50, 100, 0.0, 1.0) - 0.5) < 1e-12
    assert warmup_cosine(0, 10, 100, 1.0) == 0.0
    assert warmup_cosine(10, 10, 100, 1.0) == 1.0
    assert abs(warmup_cosine(100, 10, 100, 1.0, 0.1) - 0.1) < 1e-12
    assert linear_warmup(0, 10, 0.04, 0.07) == 0.04 and linear_warmup(10, 10, 0.04, 0.07) == 0.07
    assert momentum(0, 10, 0.99, 1.0) == 0.99


def test_token_loss_sqrt_dim_is_the_sum_over_channels_over_sqrt_d():
    pred, target = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    summed = ((pred - target) ** 2).sum(-1).mean() / 8.0
    assert losses.token_loss(pred, target, "mse", "sqrt_dim").item() == pytest.approx(summed.item(), rel=1e-5)
    assert losses.token_loss(pred, target, "mse", "mean").item() == pytest.approx(summed.item() / 8, rel=1e-5)
