"""Training engine: exact resume after SIGKILL, atomic checkpoints, run-folder safety,
non-finite losses, precision / accumulation switches, safe checkpoint loading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from plaml_lab import cli
from plaml_lab.runs.checkpoint import CheckpointError, load_checkpoint, save_atomic
from plaml_lab.method import PLAML
from plaml_lab.runs import load_run
from plaml_lab.train import RunError, pretrain
from rounding import REORDER_FACTOR, max_difference, one_ulp_drift

# Bitwise comparisons need the same kernels in every process: one thread, fp32.
DET = ["run.num_threads=1", "run.precision=fp32", "run.eval_knn=false", "run.deterministic=true"]


def _state(run_dir: Path) -> dict:
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    return {"model": ckpt["model"], "optimizer": ckpt["optimizer"]["state"], "step": ckpt["step"]}


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for pid in a["optimizer"]:
        for k, v in a["optimizer"][pid].items():
            assert torch.equal(v, b["optimizer"][pid][k]), (pid, k)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bitwise_equal_to_uninterrupted(tmp_path, quick_yaml):
    overrides = DET + ["run.max_steps=40", "run.ckpt_every=5", "run.log_every=1",
                       "model.drop_path=0.1"]  # drop-path: the global torch RNG must resume too
    pretrain(quick_yaml, tmp_path / "ref", overrides)

    cmd = [sys.executable, "-m", "plaml_lab", "pretrain", "--config", quick_yaml,
           "--out", str(tmp_path / "killed"), *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once it is past the step-10 checkpoint, mid-interval
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 13:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(metrics.read_text().splitlines())
    assert 10 <= killed_at < 40, "the kill must land mid-run"
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["step"] < 40

    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _assert_bitwise_equal(_state(tmp_path / "ref"), _state(tmp_path / "killed"))
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41))  # re-logged steps are not duplicated


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_resume_across_epochs_matches_uninterrupted(tmp_path, quick_yaml):
    """Stop at a checkpoint inside epoch 2 (max_steps), continue: same weights as one go."""
    base = DET + ["run.ckpt_every=10", "run.log_every=5", "optim.epochs=2"]
    pretrain(quick_yaml, tmp_path / "ref", base + ["run.max_steps=50"])
    pretrain(quick_yaml, tmp_path / "two", base + ["run.max_steps=40"])
    pretrain(quick_yaml, tmp_path / "two", base + ["run.max_steps=50"])  # resumes at step 40
    _assert_bitwise_equal(_state(tmp_path / "ref"), _state(tmp_path / "two"))


def test_atomic_save_leaves_previous_file_loadable_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"format": "plaml_lab.checkpoint", "config": {}, "model": {}, "step": 1}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_periodic_checkpoints_keep_only_the_last_k(tmp_path, quick_yaml):
    pretrain(quick_yaml, tmp_path / "r", ["run.max_steps=20", "run.ckpt_every=4",
                                          "run.keep_ckpts=2", "run.eval_knn=false"])
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert names == ["last.pt", "step_0000016.pt", "step_0000020.pt"]


def test_different_config_in_out_dir_is_refused_naming_keys(tmp_path, quick_yaml):
    out = tmp_path / "r"
    pretrain(quick_yaml, out, ["run.max_steps=4", "run.eval_knn=false"])
    before = (out / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(RunError, match=r"differs in mask.ratio, method.teachers"):
        pretrain(quick_yaml, out, ["run.max_steps=4", "run.eval_knn=false", "mask.ratio=0.5",
                                   "method.teachers=single"])
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_force_new_moves_the_old_run_aside(tmp_path, quick_yaml):
    out = tmp_path / "r"
    pretrain(quick_yaml, out, ["run.max_steps=4", "run.eval_knn=false"])
    old = (out / "checkpoints" / "last.pt").read_bytes()
    pretrain(quick_yaml, out, ["run.max_steps=4", "run.eval_knn=false", "mask.ratio=0.5"],
             force_new=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("r.old-")]
    assert len(aside) == 1
    assert (aside[0] / "checkpoints" / "last.pt").read_bytes() == old
    assert load_run(out).cfg.mask.ratio == 0.5


def _poison(part: str, at_step: int, monkeypatch):
    """Make `part` non-finite from the forward call number `at_step` on."""
    calls = {"n": 0}
    forward = PLAML.forward

    def patched(self, *a, **k):
        out = forward(self, *a, **k)
        calls["n"] += 1
        if calls["n"] >= at_step:
            out[part] = out[part] * float("nan")
            out["loss"] = out["loss_rec"] + out["loss_cls"] + out["loss_patch"]
        return out

    monkeypatch.setattr(PLAML, "forward", patched)


def test_nonfinite_loss_stops_naming_step_and_part_and_keeps_last_good_ckpt(
        tmp_path, quick_yaml, monkeypatch, capsys):
    out = tmp_path / "r"
    _poison("loss_cls", 7, monkeypatch)
    code = cli.main(["pretrain", "--config", quick_yaml, "--out", str(out), "run.max_steps=20",
                     "run.ckpt_every=5", "run.log_every=5", "run.eval_knn=false"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step 7" in err[0] and "loss_cls" in err[0]
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_nonfinite_skip_drops_steps_and_counts_them(tmp_path, quick_yaml, monkeypatch):
    _poison("loss_patch", 15, monkeypatch)
    summary = pretrain(quick_yaml, tmp_path / "r", ["run.max_steps=20", "run.eval_knn=false",
                                                    "run.on_nonfinite=skip", "run.log_every=5"])
    assert summary["skipped_steps"] == 6  # forward calls 15..20
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped_steps"] == 6
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains_with_finite_losses(tmp_path, quick_yaml, precision):
    s = pretrain(quick_yaml, tmp_path / precision, [f"run.precision={precision}",
                                                    "run.max_steps=6", "run.eval_knn=false"])
    assert all(torch.isfinite(torch.tensor(s[k])) for k in ("loss", "loss_rec", "loss_cls"))
    ckpt = load_checkpoint(tmp_path / precision / "checkpoints" / "last.pt")
    # the GradScaler's state (its loss scale) travels in fp16; without fp16 it is inert and empty
    assert ("scale" in ckpt["scaler"]) == (precision == "fp16"), ckpt["scaler"]


def test_accumulation_matches_one_big_batch(tmp_path, quick_yaml, monkeypatch):
    """2 micro-batches of 16 + accum = one step of 32 when nothing depends on batch statistics:
    same images per step, same schedules; equal up to float summation order, i.e. within
    REORDER_FACTOR x the drift a one-ulp nudge of the weights produces (tests/rounding.py)."""
    common = DET + ["run.max_steps=3", "method.target=pixels", "method.pseudo_labels=none",
                    "data.views=1", "data.aug.crop_scale_min=1.0", "data.aug.flip=false",
                    "data.aug.color_jitter=0", "data.aug.grayscale_p=0"]
    # masks are drawn per micro-batch, so use mask noise that does not depend on the batch split
    def big(out):
        pretrain(quick_yaml, out, common + ["optim.batch_size=32"])

    big(tmp_path / "big")
    drift = one_ulp_drift(monkeypatch, big, tmp_path / "big", tmp_path / "nudged")
    pretrain(quick_yaml, tmp_path / "acc", common + ["optim.batch_size=16",
                                                     "optim.accum_steps=2"])
    diff, key = max_difference(_state(tmp_path / "big")["model"], _state(tmp_path / "acc")["model"])
    assert diff <= REORDER_FACTOR * drift, (key, diff, drift)


def test_clip_grad_clips_the_student_and_compile_compiles_the_step(tmp_path, quick_yaml,
                                                                   monkeypatch):
    """optim.clip_grad reaches the clipping (with the student's trainable parameters and
    optim.clip_mode) on every step, and run.compile=true hands the step module to
    torch.compile (stood in for by a spy: a real compile takes minutes on a CPU); with both
    off, neither is called."""
    import plaml_lab.train_step as step_mod
    compiled, clipped = [], []
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: compiled.append(m) or m)
    real_clip = step_mod.clip_gradients

    def clip(params, max_norm, mode):
        params = list(params)
        clipped.append((len(params), max_norm, mode))
        return real_clip(params, max_norm, mode)

    monkeypatch.setattr(step_mod, "clip_gradients", clip)
    s = pretrain(quick_yaml, tmp_path / "c", ["run.max_steps=3", "run.eval_knn=false",
                                              "optim.clip_grad=0.5", "run.compile=true"])
    assert torch.isfinite(torch.tensor(s["loss"]))
    assert [type(m).__name__ for m in compiled] == ["PLAML"]
    n_student = len([p for p in load_run(tmp_path / "c").model.student.parameters()
                     if p.requires_grad])
    assert clipped == [(n_student, 0.5, "per_param")] * 3  # DINO's clipping is the default
    compiled.clear(), clipped.clear()
    pretrain(quick_yaml, tmp_path / "off", ["run.max_steps=2", "run.eval_knn=false",
                                            "optim.clip_grad=0", "run.compile=false"])
    assert compiled == [] and clipped == []


# --- safe loading -------------------------------------------------------------------------------

def test_refuses_a_file_that_is_not_a_plaml_checkpoint(tmp_path):
    p = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(CheckpointError, match="other.pt: not a plaml_lab checkpoint"):
        load_checkpoint(p)


def test_refuses_random_bytes_as_not_a_checkpoint(tmp_path):
    p = tmp_path / "noise.pt"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match=r"noise.pt: not a checkpoint \(not a file torch.save"):
        load_checkpoint(p)


def test_refuses_a_truncated_checkpoint(tmp_path, quick_run):
    data = (quick_run / "checkpoints" / "last.pt").read_bytes()
    p = tmp_path / "cut.pt"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: truncated or corrupt"):
        load_checkpoint(p)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_pickled_code(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "plaml_lab.checkpoint", "payload": _Evil()}, p)
    with pytest.raises(CheckpointError, match="evil.pt: holds pickled code"):
        load_checkpoint(p)


def test_refuses_a_model_of_another_shape(tmp_path, quick_run):
    with pytest.raises(CheckpointError, match="another shape|another configuration"):
        from plaml_lab.runs.checkpoint import load_model_state
        from plaml_lab.config import load_config
        cfg = load_config("experiments/configs/quick.yaml", ["model.embed_dim=64"])
        ckpt = load_checkpoint(quick_run / "checkpoints" / "last.pt")
        load_model_state(PLAML.from_config(cfg), ckpt["model"], "last.pt")
