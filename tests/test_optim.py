"""Gradient clipping (plaml_lab.optim), pinned to hand-computed norms."""

from __future__ import annotations

import math

import pytest
import torch

from plaml_lab.optim import clip_gradients


def test_per_param_clipping_clips_each_gradient_alone_and_global_clips_the_total():
    big, small = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    def grads():
        big.grad = torch.tensor([10.0, 0, 0, 0])
        small.grad = torch.tensor([0.0, 1.0, 0, 0])
    grads()
    clip_gradients([big, small], 3.0, "per_param")
    assert big.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    assert small.grad.norm().item() == pytest.approx(1.0)  # under the limit: untouched
    grads()
    clip_gradients([big, small], 3.0, "global")
    total = math.hypot(10, 1)
    assert small.grad.norm().item() == pytest.approx(3.0 / total, rel=1e-4)
