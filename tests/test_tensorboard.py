"""run.tensorboard: the event files hold the scalars of metrics.jsonl and the demo's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from plaml_lab.train import pretrain

QUICK = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "quick.yaml")


FAST = ["run.max_steps=6", "run.log_every=2", "run.ckpt_every=4", "run.eval_knn=false",
        "run.progress=false", "run.num_threads=1", "run.tensorboard=true",
        "run.tensorboard_images=8"]


def _events(run) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _numeric(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))
            and not isinstance(v, bool)}


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_event_file_holds_every_metrics_jsonl_scalar_and_the_figures(tmp_path):
    run = tmp_path / "run"
    pretrain(QUICK, run, FAST)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    acc = _events(run)
    tags = acc.Tags()
    assert set(_numeric(rows[0])) <= set(tags["scalars"])
    assert "loss_cls" in tags["scalars"] and "momentum_labelling" in tags["scalars"]
    for key in _numeric(rows[0]):
        logged = {e.step: e.value for e in acc.Scalars(key)}
        assert sorted(logged) == [r["step"] for r in rows] == [2, 4, 6]
        for r in rows:
            assert logged[r["step"]] == pytest.approx(r[key], rel=1e-6, abs=1e-7), key
    assert set(tags["images"]) == {"figures/masks", "figures/pseudo_labels"}
    assert [e.step for e in acc.Images("figures/masks")] == [2, 4, 6]
    assert acc.Images("figures/masks")[0].width > 100


def test_a_resumed_run_logs_each_step_once_in_tensorboard(tmp_path):
    """A run killed after logging step 6 but before its checkpoint (last.pt put back to step
    4) resumes from 4: TensorBoard drops the first step-6 values, as metrics.jsonl does."""
    run = tmp_path / "run"
    args = [*FAST, "run.tensorboard_images=0", "run.keep_ckpts=2"]
    pretrain(QUICK, run, args)
    first = {e.step: e.value for e in _events(run).Scalars("loss")}
    (run / "checkpoints" / "step_0000004.pt").replace(run / "checkpoints" / "last.pt")
    pretrain(QUICK, run, [*args, "run.seed=0", "loss.w_cls=1"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [(e.step, e.value) for e in _events(run).Scalars("loss")]
    assert [s for s, _ in logged] == [r["step"] for r in rows] == [2, 4, 6]
    assert [v for _, v in logged] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert first[4] == pytest.approx(rows[1]["loss"], rel=1e-6)


def test_no_event_files_unless_asked(tmp_path):
    pretrain(QUICK, tmp_path / "run", [*FAST, "run.tensorboard=false"])
    assert not (tmp_path / "run" / "tensorboard").exists()
