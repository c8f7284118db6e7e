"""The prototype freeze is a share of the run (DINO: 1 epoch of 100), so short runs are not
mostly frozen: the lab preset's 390 steps trained 312 of them with frozen prototypes at 1 epoch."""

from __future__ import annotations

from plaml_lab.config import load_config
from plaml_lab.schedules import Schedule


def _schedule(preset=None, overrides=(), steps_per_epoch=312):
    cfg = load_config(preset, list(overrides))
    return Schedule(cfg, steps_per_epoch, cfg.optim.batch_size)


def test_freeze_defaults_to_one_percent_of_the_run_and_scales_with_its_length():
    short = _schedule(None, ["optim.epochs=1"], steps_per_epoch=400)
    long = _schedule(None, ["optim.epochs=100"], steps_per_epoch=400)
    assert short.freeze_protos == 4 and long.freeze_protos == 400  # 1% of 400 and of 40,000
    both = _schedule(None, ["optim.epochs=100", "pl.freeze_prototypes_epochs=2"], 400)
    assert both.freeze_protos == 800  # the longer of 2 epochs and 1%


def test_lab_and_demo_presets_freeze_at_most_a_few_percent_of_their_steps():
    for preset in ("experiments/configs/lab.yaml", "experiments/configs/demo.yaml",
                   "experiments/configs/cifar_cpu.yaml"):
        s = _schedule(preset)
        assert 0 < s.freeze_protos <= 0.03 * s.total, (preset, s.freeze_protos, s.total)
