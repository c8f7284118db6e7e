"""Losses as pure functions, pinned to independent computations."""

from __future__ import annotations

import numpy as np
import torch

from plaml_lab import losses
from plaml_lab.schedules import cosine_schedule, linear_warmup, momentum, warmup_cosine


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


def test_token_losses_zero_at_target_and_positive_elsewhere():
    t = torch.randn(2, 5, 8)
    for kind in ("mse", "smooth_l1", "cosine"):
        assert float(losses.token_loss(t, t, kind)) < 1e-6
        assert float(losses.token_loss(t + 1, t, kind)) > 0 or kind == "cosine"
    assert abs(float(losses.token_loss(t + 1, t, "mse")) - 1.0) < 1e-6


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


def test_pl_cross_entropy_matches_definition():
    t = torch.softmax(torch.randn(3, 10), -1)
    s = torch.randn(3, 10)
    ref = -(t * torch.log_softmax(s / 0.1, -1)).sum(-1)
    assert torch.allclose(losses.pl_cross_entropy(t, s, 0.1), ref)


def test_cross_view_loss_pairs_each_student_view_with_the_other_teacher_view():
    t = torch.softmax(torch.randn(2, 4, 8), -1)
    s = torch.randn(2, 4, 8)
    ce = lambda a, b: losses.pl_cross_entropy(a, b, 0.1).mean()  # noqa: E731
    expected = (ce(t[1], s[0]) + ce(t[0], s[1])) / 2
    assert torch.allclose(losses.cross_view_loss(t, s, 0.1), expected)
    assert torch.allclose(losses.cross_view_loss(t[:1], s[:1], 0.1), ce(t[0], s[0]))


def test_schedules_hit_their_endpoints():
    assert cosine_schedule(0, 100, 0.996, 1.0) == 0.996
    assert abs(cosine_schedule(100, 100, 0.996, 1.0) - 1.0) < 1e-12
    assert abs(cosine_schedule(50, 100, 0.0, 1.0) - 0.5) < 1e-12
    assert warmup_cosine(0, 10, 100, 1.0) == 0.0
    assert warmup_cosine(10, 10, 100, 1.0) == 1.0
    assert abs(warmup_cosine(100, 10, 100, 1.0, 0.1) - 0.1) < 1e-12
    assert linear_warmup(0, 10, 0.04, 0.07) == 0.04 and linear_warmup(10, 10, 0.04, 0.07) == 0.07
    assert momentum(0, 10, 0.99, 1.0) == 0.99
