"""run.tensorboard: the event files hold the scalars of metrics.jsonl and the demo's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from plaml_lab.runs.tensorboard import tag
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
def test_event_file_holds_every_metrics_jsonl_scalar_under_its_group_and_the_figures(tmp_path):
    run = tmp_path / "run"
    pretrain(QUICK, run, FAST)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    acc = _events(run)
    tags = acc.Tags()
    assert {tag(k) for k in _numeric(rows[0])} <= set(tags["scalars"])
    assert {"loss/loss_cls", "schedule/lr", "schedule/momentum_labelling", "monitor/cls_std",
            "speed/imgs_per_s"} <= set(tags["scalars"])
    assert not [t for t in tags["scalars"] if "/" not in t or t.startswith("other/")]
    for key in _numeric(rows[0]):
        logged = {e.step: e.value for e in acc.Scalars(tag(key))}
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
    first = {e.step: e.value for e in _events(run).Scalars("loss/loss")}
    (run / "checkpoints" / "step_0000004.pt").replace(run / "checkpoints" / "last.pt")
    pretrain(QUICK, run, [*args, "run.seed=0", "loss.w_cls=1"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [(e.step, e.value) for e in _events(run).Scalars("loss/loss")]
    assert [s for s, _ in logged] == [r["step"] for r in rows] == [2, 4, 6]
    assert [v for _, v in logged] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert first[4] == pytest.approx(rows[1]["loss"], rel=1e-6)


def test_no_event_files_unless_asked(tmp_path):
    pretrain(QUICK, tmp_path / "run", [*FAST, "run.tensorboard=false"])
    assert not (tmp_path / "run" / "tensorboard").exists()


def _hparams_plugin_data(run):
    """(hparams of the session, metric tags of the experiment) from the run's own event file."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    data = {t: plugin_data_pb2.HParamsPluginData.FromString(c) for t, c in content.items()}
    start = data[metadata.SESSION_START_INFO_TAG].session_start_info
    experiment = data[metadata.EXPERIMENT_TAG].experiment
    hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
               for k, v in start.hparams.items()}
    metrics = [m.name.tag for m in experiment.metric_infos]
    return hparams, metrics, acc


def test_hparams_in_the_runs_own_event_file_hold_its_config_keys_and_final_knn(tmp_path):
    run = tmp_path / "run"
    summary = pretrain(QUICK, run, [*FAST, "run.eval_knn=true", "run.tensorboard_images=0",
                                    "mask.ratio=0.6", "method.teachers=single",
                                    "run.precision=fp32"])
    # one event file: the hparams are not in a sub-run of their own
    assert [p.parent for p in (run / "tensorboard").rglob("events.*")] == [run / "tensorboard"]
    hparams, metrics, acc = _hparams_plugin_data(run)
    assert hparams["mask.ratio"] == pytest.approx(0.6)
    assert hparams["method.teachers"] == "single" and hparams["variant"] == "single"
    assert hparams["model.embed_dim"] == 32  # the quick preset's, not the default 192
    assert hparams["run.seed"] == 0
    assert "run.name" not in hparams and "run.tensorboard" not in hparams
    assert {"final/knn_top1", "final/loss"} <= set(metrics)
    final = acc.Scalars("final/knn_top1")
    assert [e.step for e in final] == [6]
    assert final[0].value == pytest.approx(summary["knn_top1"], rel=1e-6)
