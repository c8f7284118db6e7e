"""model.init_from: pretraining starts from an exported (or timm) encoder, strictly by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from plaml_lab import train
from plaml_lab.cli import main as cli_main
from plaml_lab.config import ConfigError
from plaml_lab.export import export_timm
from plaml_lab.method.vit import ViTEncoder
from plaml_lab.pretrained import load_into_encoder, read_encoder_weights
from plaml_lab.runs import load_run

QUICK = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "quick.yaml")


FAST = ["run.max_steps=2", "run.eval_knn=false", "run.progress=false", "run.num_threads=1"]


@pytest.fixture(scope="module")
def exported(quick_run, tmp_path_factory):
    return export_timm(quick_run, tmp_path_factory.mktemp("enc") / "enc.safetensors")


def test_pretraining_from_an_export_starts_student_and_teachers_at_the_file(
        exported, tmp_path, monkeypatch):
    """The model the optimiser is built for (step 0, before any update) holds the file's
    weights in the student's encoder and in both teachers' encoders."""
    seen = {}
    real = train.make_optimizer

    def spy(model, *a, **k):
        seen["student"] = {k: v.clone() for k, v in model.student.encoder.state_dict().items()}
        seen["teachers"] = {n: {k: v.clone() for k, v in t.encoder.state_dict().items()}
                            for n, t in model.teachers.items()}
        return real(model, *a, **k)

    monkeypatch.setattr(train, "make_optimizer", spy)
    train.pretrain(QUICK, tmp_path / "run", [f"model.init_from={exported}", *FAST])
    file = load_file(str(exported))
    assert sorted(seen["student"]) == sorted(file)
    assert all(torch.equal(seen["student"][k], file[k]) for k in file)
    assert sorted(seen["teachers"]) == ["labelling", "reconstruction"]
    for t in seen["teachers"].values():
        assert all(torch.equal(t[k], file[k]) for k in file)
    # and training went on from there: the run moved away from the file
    after = load_run(tmp_path / "run").encoder().state_dict()
    assert not torch.equal(after["blocks.0.attn.qkv.weight"], file["blocks.0.attn.qkv.weight"])


def test_a_random_init_run_differs_from_the_file(exported, tmp_path, monkeypatch):
    """Guards the test above: without init_from, the step-0 encoder is not the file's."""
    seen = {}
    real = train.make_optimizer

    def spy(model, *a, **k):
        seen.update(model.student.encoder.state_dict())
        return real(model, *a, **k)

    monkeypatch.setattr(train, "make_optimizer", spy)
    train.pretrain(QUICK, tmp_path / "run", ["run.seed=5", *FAST])
    file = load_file(str(exported))
    assert not torch.equal(seen["blocks.0.attn.qkv.weight"], file["blocks.0.attn.qkv.weight"])


def test_a_file_of_another_shape_is_a_one_line_error_naming_both_shapes(
        exported, tmp_path, capsys):
    code = cli_main(["pretrain", "--config", QUICK, "--out", str(tmp_path / "run"),
                     f"model.init_from={exported}", "model.embed_dim=64", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: model.init_from=")
    assert "file (1, 1, 32), model (1, 1, 64)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("spec, needle", [
    ("missing.safetensors", "file not found"),
    ("QUICK", "expected a .safetensors file"),
    ("not_a_timm_model@QUICK", "not a timm model name"),
])
def test_bad_init_from_is_a_one_line_error(spec, needle, tmp_path, capsys):
    spec = spec.replace("QUICK", QUICK)
    code = cli_main(["pretrain", "--config", QUICK, "--out", str(tmp_path / "run"),
                     f"model.init_from={spec}", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_timm_name_with_a_local_file_loads_through_timm(tmp_path):
    """TIMM_NAME@FILE: timm reads the file (here a .pth state dict of vit_tiny_patch16_224 with
    its classifier) and the encoder of the same shape takes every tensor but the head."""
    torch.manual_seed(0)
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    torch.save(src.state_dict(), tmp_path / "vit_tiny.pth")
    state = read_encoder_weights(f"vit_tiny_patch16_224@{tmp_path / 'vit_tiny.pth'}")
    assert not any(k.startswith("head.") for k in state)
    enc = ViTEncoder(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3)
    load_into_encoder(enc, state, "vit_tiny")
    assert torch.equal(enc.blocks[11].mlp.fc1.weight, src.blocks[11].mlp.fc1.weight)
    small = ViTEncoder(img_size=224, patch_size=16, embed_dim=192, depth=6, num_heads=3)
    with pytest.raises(ConfigError, match="unexpected tensors"):
        load_into_encoder(small, state, "vit_tiny")


def test_a_frozen_reconstruction_teacher_starts_at_the_file_and_stays_there(exported, tmp_path):
    """teachers.reconstruction.init_from with momentum 1: after training, the reconstruction
    teacher's encoder is the file's, bit for bit, while the student (random init, seed 5) and
    the labelling teacher (the student's EMA) are not; resuming does not read the file again."""
    out = tmp_path / "run"
    frozen = [f"teachers.reconstruction.init_from={exported}", "teachers.reconstruction.momentum=1",
              "teachers.reconstruction.momentum_end=1", "run.seed=5"]
    train.pretrain(QUICK, out, [*frozen, *FAST])
    model = load_run(out).model
    file = load_file(str(exported))
    rec = model.teachers["reconstruction"].encoder.state_dict()
    assert all(torch.equal(rec[k], file[k]) for k in file)
    for encoder in (model.student.encoder, model.teachers["labelling"].encoder):
        assert not torch.equal(encoder.state_dict()["cls_token"], file["cls_token"])
    # a resumed run reads its checkpoint, not the file (here gone)
    moved = exported.with_name("moved.safetensors")
    exported.rename(moved)
    try:
        train.pretrain(QUICK, out, [*frozen, *FAST[1:], "run.max_steps=3"])
    finally:
        moved.rename(exported)


def test_a_bad_teacher_init_from_is_a_one_line_error_naming_the_teacher_key(
        exported, tmp_path, capsys):
    code = cli_main(["pretrain", "--config", QUICK, "--out", str(tmp_path / "run"),
                     f"teachers.labelling.init_from={exported}", "model.embed_dim=64", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: teachers.labelling.init_from=")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
