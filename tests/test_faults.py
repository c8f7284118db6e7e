"""Faults a run must survive with nothing lost and nothing silently wrong: non-finite weights
never saved, loaded or exported; every micro-batch checked; resume from the newest loadable
checkpoint; a corrupt metrics line kept; atomic periodic checkpoints; a full disk in one line.
docs/reliability.md lists each guarantee beside its test here."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from plaml_lab import cli
from plaml_lab.method import PLAML
from plaml_lab.runs import read_metrics
from plaml_lab.runs.checkpoint import copy_atomic, load_checkpoint, save_atomic
from plaml_lab.train import pretrain

FP32 = ["run.precision=fp32", "run.eval_knn=false", "run.num_threads=1"]
# bitwise comparisons (as tests/test_engine.py)
DET = FP32 + ["run.deterministic=true"]
# optim.lr=1e2 makes the weights overflow within ~10 steps on the quick preset
EXPLODE = ["run.max_steps=20", "run.ckpt_every=2", "run.log_every=1", "optim.lr=1e2"]


def _all_finite(path: Path) -> bool:
    ckpt = torch.load(path, weights_only=True)  # not load_checkpoint: it would refuse NaNs
    return all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def _err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.strip().splitlines()
            if ln.startswith("error:")]


# --- 1. never save, load or export non-finite weights ------------------------------------------

def test_exploding_lr_exits_3_leaving_only_finite_checkpoints_and_resume_accepts_the_advice(
        tmp_path, quick_yaml, capsys):
    out = tmp_path / "r"
    argv = ["pretrain", "--config", quick_yaml, "--out", str(out), *EXPLODE, *FP32]
    assert cli.main(argv) == 3
    err = _err_lines(capsys)
    assert len(err) == 1 and "run.on_nonfinite=skip" in err[0], err
    ckpts = sorted((out / "checkpoints").glob("*.pt"))
    assert ckpts and all(_all_finite(p) for p in ckpts), ckpts
    stopped_at = load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert f"keeps step {stopped_at}" in err[0]
    # what the message suggests, resume accepts: the run goes on from the last finite step
    assert cli.main(argv + ["run.on_nonfinite=skip"]) == 0
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["step"] == 20 and last["counters"]["skipped_steps"] > 0
    assert _all_finite(out / "checkpoints" / "last.pt")


def test_exploding_lr_with_skip_never_applies_a_nonfinite_update(tmp_path, quick_yaml):
    s = pretrain(quick_yaml, tmp_path / "r", EXPLODE + FP32 + ["run.on_nonfinite=skip"])
    assert s["steps"] == 20 and s["skipped_steps"] > 0
    assert all(_all_finite(p) for p in (tmp_path / "r" / "checkpoints").glob("*.pt"))


@pytest.fixture
def poisoned_run(tmp_path, quick_yaml) -> Path:
    """A run folder whose last.pt holds a NaN weight (as one written before this check)."""
    out = tmp_path / "poisoned"
    pretrain(quick_yaml, out, ["run.max_steps=2"] + FP32)
    path = out / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key] = ckpt["model"][key] * float("nan")
    save_atomic(ckpt, path)
    return out


@pytest.mark.parametrize("command", ["eval", "export"])
def test_eval_and_export_refuse_nonfinite_weights_in_one_line(poisoned_run, tmp_path, command,
                                                              capsys):
    exported = tmp_path / "enc.safetensors"
    argv = (["eval", "--checkpoint", str(poisoned_run), "--probes", "knn", "--no-progress"]
            if command == "eval" else
            ["export", "--checkpoint", str(poisoned_run), "--out", str(exported)])
    assert cli.main(argv) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "last.pt" in err[0] and "non-finite weights" in err[0], err
    assert not exported.exists()


def test_resume_skips_a_nonfinite_last_pt_for_the_newest_finite_periodic_one(
        tmp_path, quick_yaml, capsys):
    out = tmp_path / "r"
    base = ["run.ckpt_every=2", "run.keep_ckpts=2"] + FP32
    pretrain(quick_yaml, out, base + ["run.max_steps=4"])
    path = out / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = {k: v * float("nan") if v.is_floating_point() else v
                     for k, v in ckpt["model"].items()}
    save_atomic(ckpt, path)
    (out / "checkpoints" / "step_0000004.pt").unlink()
    capsys.readouterr()
    s = pretrain(quick_yaml, out, base + ["run.max_steps=6"])
    assert s["steps"] == 6 and _all_finite(path)
    assert "resuming from" in capsys.readouterr().err


# --- 2. every micro-batch counts ----------------------------------------------------------------

def _forward_calls(monkeypatch, poison_call: int | None = None) -> list[float]:
    """Record every forward's loss; with poison_call, that one call's loss parts become NaN."""
    losses: list[float] = []
    forward = PLAML.forward

    def patched(self, *a, **k):
        out = forward(self, *a, **k)
        if len(losses) + 1 == poison_call:
            for part in ("loss_rec", "loss_cls", "loss_patch"):
                out[part] = out[part] * float("nan")
            out["loss"] = out["loss_rec"] + out["loss_cls"] + out["loss_patch"]
        losses.append(float(out["loss"].detach()))
        return out

    monkeypatch.setattr(PLAML, "forward", patched)
    return losses


def test_nan_in_the_first_micro_batch_is_skipped_not_applied(tmp_path, quick_yaml, monkeypatch):
    # forward call 5 = micro-batch 0 of step 3 (two micro-batches a step)
    _forward_calls(monkeypatch, poison_call=5)
    s = pretrain(quick_yaml, tmp_path / "r", FP32 + [
        "run.max_steps=6", "optim.batch_size=16", "optim.accum_steps=2",
        "run.on_nonfinite=skip", "run.log_every=1"])
    assert s["skipped_steps"] == 1  # that step only: the weights it would have poisoned are not
    assert _all_finite(tmp_path / "r" / "checkpoints" / "last.pt")


def test_nan_in_the_first_micro_batch_stops_naming_its_step(tmp_path, quick_yaml, monkeypatch,
                                                            capsys):
    _forward_calls(monkeypatch, poison_call=5)
    code = cli.main(["pretrain", "--config", quick_yaml, "--out", str(tmp_path / "r"), *FP32,
                     "run.max_steps=6", "optim.batch_size=16", "optim.accum_steps=2",
                     "run.log_every=1", "run.ckpt_every=2"])
    assert code == 3
    err = _err_lines(capsys)
    assert len(err) == 1 and "step 3" in err[0], err
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 2


def test_logged_loss_is_the_mean_over_micro_batches(tmp_path, quick_yaml, monkeypatch):
    losses = _forward_calls(monkeypatch)
    pretrain(quick_yaml, tmp_path / "r", FP32 + ["run.max_steps=3", "optim.batch_size=16",
                                                 "optim.accum_steps=2", "run.log_every=1"])
    rows = read_metrics(tmp_path / "r")
    for i, row in enumerate(rows):
        assert row["loss"] == pytest.approx((losses[2 * i] + losses[2 * i + 1]) / 2, rel=1e-6)


# --- 3. resume never drops progress -------------------------------------------------------------

def test_deleted_last_pt_resumes_from_the_newest_periodic_checkpoint_bitwise(
        tmp_path, quick_yaml, capsys):
    base = DET + ["run.ckpt_every=2", "run.keep_ckpts=2", "run.log_every=1"]
    pretrain(quick_yaml, tmp_path / "ref", base + ["run.max_steps=10"])
    out = tmp_path / "r"
    pretrain(quick_yaml, out, base + ["run.max_steps=8"])
    (out / "checkpoints" / "last.pt").unlink()
    capsys.readouterr()
    s = pretrain(quick_yaml, out, base + ["run.max_steps=10"])
    err = capsys.readouterr().err
    assert "resuming from" in err and "step_0000008.pt" in err and "last.pt is missing" in err
    assert s["steps"] == 10
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 11))
    a = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_middle_metrics_line_is_kept_and_no_later_row_is_lost_across_resume(
        tmp_path, quick_yaml):
    out = tmp_path / "r"
    base = FP32 + ["run.ckpt_every=3", "run.log_every=1"]
    pretrain(quick_yaml, out, base + ["run.max_steps=6"])
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = '{"step": 2, "loss": 0.1'  # cut in the middle (a disk error, an editor)
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="line 2"):
        assert [r["step"] for r in read_metrics(out)] == [1, 3, 4, 5, 6]
    with pytest.warns(UserWarning, match="kept unreadable line 2"):
        pretrain(quick_yaml, out, base + ["run.max_steps=8"])
    after = path.read_text().splitlines()
    assert after[1] == lines[1]  # kept as it was
    with pytest.warns(UserWarning):
        assert [r["step"] for r in read_metrics(out)] == [1, 3, 4, 5, 6, 7, 8]


def test_copy_atomic_killed_mid_copy_leaves_no_partial_step_checkpoint(tmp_path, monkeypatch):
    src = tmp_path / "last.pt"
    save_atomic({"format": "plaml_lab.checkpoint", "config": {}, "model": {}, "step": 4}, src)

    def killed(a, b, *args, **kwargs):
        Path(b).write_bytes(b"")  # what a kill after open() leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", killed)
    with pytest.raises(KeyboardInterrupt):
        copy_atomic(src, tmp_path / "step_0000004.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_stale_temporaries_of_killed_writes_are_removed_on_start(tmp_path, quick_yaml):
    out = tmp_path / "r"
    pretrain(quick_yaml, out, FP32 + ["run.max_steps=2"])
    stale = [out / "checkpoints" / ".last.pt.tmp-999999", out / ".summary.json.tmp-999998"]
    for p in stale:
        p.write_bytes(b"half")
    pretrain(quick_yaml, out, FP32 + ["run.max_steps=4"])
    assert not any(p.exists() for p in stale)


# --- a full disk -------------------------------------------------------------------------------

def _full_disk_after(monkeypatch, good_writes: int) -> None:
    """Checkpoint files opened for writing after the first `good_writes` go to /dev/full: every
    write to them fails with ENOSPC, as on a full disk."""
    import plaml_lab.runs.checkpoint as ckpt_mod
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    opened = {"n": 0}

    def fake_open(file, mode="r", *args, **kwargs):
        if "w" in mode:
            opened["n"] += 1
            if opened["n"] > good_writes:
                file = "/dev/full"
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod, "open", fake_open, raising=False)


def test_save_atomic_on_a_full_disk_raises_enospc_naming_the_file(tmp_path, monkeypatch):
    _full_disk_after(monkeypatch, 0)
    with pytest.raises(OSError) as e:
        save_atomic({"weights": torch.zeros(100_000)}, tmp_path / "last.pt")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "last.pt")


def test_full_disk_is_one_line_naming_the_file_and_the_last_good_checkpoint(
        tmp_path, quick_yaml, monkeypatch, capsys):
    out = tmp_path / "r"
    _full_disk_after(monkeypatch, 1)  # the step-2 checkpoint is written, the step-4 one is not
    code = cli.main(["pretrain", "--config", quick_yaml, "--out", str(out), *FP32,
                     "run.max_steps=6", "run.ckpt_every=2", "run.keep_ckpts=0",
                     "run.log_every=1"])
    monkeypatch.undo()
    assert code == 2
    err = _err_lines(capsys)
    assert len(err) == 1, err
    assert "last.pt" in err[0] and "No space left" in err[0] and "(step 2)" in err[0], err[0]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    assert [r["step"] for r in read_metrics(out)][:2] == [1, 2]


def test_full_disk_while_resuming_leaves_config_yaml_whole(tmp_path, quick_yaml, monkeypatch,
                                                           capsys):
    out = tmp_path / "r"
    pretrain(quick_yaml, out, FP32 + ["run.max_steps=2"])
    before = (out / "config.yaml").read_bytes()
    real = Path.write_text

    def half_then_full(self, text, *a, **k):  # what a write on a full disk leaves
        real(self, text[: len(text) // 2], *a, **k)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    code = cli.main(["pretrain", "--config", quick_yaml, "--out", str(out), *FP32,
                     "run.max_steps=4"])
    monkeypatch.undo()
    assert code == 2 and "(step 2)" in _err_lines(capsys)[0]
    assert (out / "config.yaml").read_bytes() == before
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
