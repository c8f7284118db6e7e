"""train_step as a library function: a step outside `pretrain`, built from the quick preset."""

from __future__ import annotations

import math

import pytest
import torch

from plaml_lab.config import load_config
from plaml_lab.method import LOSS_KEYS, PLAML
from plaml_lab.optim import make_optimizer
from plaml_lab.schedules import Schedule
from plaml_lab.train_step import TrainState, train_step

# a student weight and the teacher weight of the same name (Teacher.param_pairs' rule)
WEIGHT = "encoder.blocks.0.attn.qkv.weight"


def _weight(module: torch.nn.Module) -> torch.Tensor:
    return dict(module.named_parameters())[WEIGHT].detach().clone()


def test_two_train_steps_move_the_student_and_each_teacher_by_one_ema_update(quick_yaml):
    # no lr warm-up, and an lr large enough that one EMA move stands far above float rounding
    cfg = load_config(quick_yaml, ["run.precision=fp32", "optim.warmup_epochs=0",
                                   "optim.lr=0.01"])
    torch.manual_seed(0)
    model = PLAML.from_config(cfg).train()
    sched = Schedule(cfg, steps_per_epoch=10, global_batch=cfg.optim.batch_size)
    optimizer = make_optimizer(model, cfg, sched.base_lr, torch.device("cpu"))
    state = TrainState(cfg, model, optimizer, sched)
    size = cfg.model.img_size
    batch = {"image": torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(1))}
    assert sorted(model.teachers) == ["labelling", "reconstruction"]

    for step in range(2):
        student_old = _weight(model.student)
        teachers_old = {n: _weight(t) for n, t in model.teachers.items()}
        result = train_step(state, [batch])

        assert state.step == step + 1 and result.applied
        assert sorted(result.losses) == sorted(LOSS_KEYS)
        assert all(isinstance(float(v), float) and math.isfinite(float(v))
                   for v in result.losses.values())
        student_new = _weight(model.student)
        assert not torch.equal(student_new, student_old)
        for name, teacher in model.teachers.items():
            m = sched.momenta(step)[name]
            old, new = teachers_old[name].double(), _weight(teacher).double()
            # one EMA update, computed here in float64: m * teacher_old + (1 - m) * student_new
            expected = m * old + (1 - m) * student_new.double()
            assert float((new - old).abs().max()) > 1e-6, name  # it moved ...
            assert float((new - expected).abs().max()) < 1e-7, name  # ... by exactly that
    assert state.counters == {"skipped_steps": 0, "bad_images": 0}

    with pytest.raises(ValueError, match="takes optim.accum_steps=1 micro-batches, got more"):
        train_step(state, [batch, batch])


def test_the_train_step_snippet_of_docs_method_runs_as_written(root, monkeypatch):
    text = (root / "docs" / "method.md").read_text().split("call the trainer's step", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(root)  # the snippet names the preset relative to the repository
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ns: dict = {"loader": [{"image": images}] * 2}
    exec(code, ns)
    assert ns["state"].step == 2 and ns["result"].applied
    assert math.isfinite(float(ns["result"].losses["loss"]))
