"""Tests for plaml_lab.export: the exported safetensors file loads with strict=True into timm's
VisionTransformer (and into timm.create_model('vit_base_patch16_224', ...) through a local
pretrained file), and timm's forward_features equals the plaml_lab encoder's (fp32)."""

from __future__ import annotations

import json

import pytest
import torch

from plaml_lab.runs.checkpoint import CheckpointError
from plaml_lab.cli import main as cli_main
from plaml_lab.export import (export_timm, load_timm, read_timm_kwargs, save_encoder,
                              timm_kwargs)
from plaml_lab.runs import load_run, random_init_run

QUICK = "experiments/configs/quick.yaml"
TINY = ["run.progress=false", "run.num_threads=1", "data.num_train=128", "data.num_val=64",
        "run.eval_knn=false", "run.max_steps=2"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from plaml_lab.train import pretrain

    out = tmp_path_factory.mktemp("export") / "run"
    pretrain(QUICK, out, TINY)
    return out


@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt by timm to fetch weights from a hub or URL fails the test."""
    import timm.models._builder as builder

    def refuse(*args, **kwargs):
        raise AssertionError(f"timm tried to download weights: {args[:1]}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(builder, name, refuse)


def _vit(img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int):
    """A seeded random plaml_lab encoder (eval mode) and its timm VisionTransformer kwargs."""
    from plaml_lab.method.vit import ViTEncoder

    kwargs = {"img_size": img_size, "patch_size": patch_size, "in_chans": 3,
              "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "mlp_ratio": 4.0}
    torch.manual_seed(0)
    enc = ViTEncoder(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                     num_heads=num_heads).eval()
    return enc, kwargs


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("which", ["student", "labelling", "reconstruction"])
def test_export_loads_strict_into_timm_and_forward_features_match(quick_run, tmp_path, which):
    from safetensors.torch import load_file
    from timm.models.vision_transformer import VisionTransformer

    run = load_run(quick_run)
    path = export_timm(quick_run, tmp_path / "enc.safetensors", encoder=which)
    model = VisionTransformer(**timm_kwargs(run.cfg.model), num_classes=0)
    model.load_state_dict(load_file(str(path)), strict=True)  # raises on any missing/extra key
    model.eval()
    x = _images(4, run.cfg.model.img_size)
    with torch.no_grad():
        ours = run.encoder(which)(x)
        theirs = model.forward_features(x)
    assert theirs.shape == ours.shape == (4, 1 + 16, 32)
    assert (theirs - ours).abs().max().item() < 1e-5
    # the teachers differ from the student after training: the right encoder was exported
    if which != "student":
        with torch.no_grad():
            assert (run.encoder("student")(x) - theirs).abs().max().item() > 1e-6


def test_load_timm_rebuilds_the_shape_from_file_metadata(quick_run, tmp_path):
    run = load_run(quick_run)
    path = export_timm(run, tmp_path / "enc.safetensors")
    assert read_timm_kwargs(path) == {"img_size": 16, "patch_size": 4, "in_chans": 3,
                                      "embed_dim": 32, "depth": 2, "num_heads": 2,
                                      "mlp_ratio": 4.0}
    x = _images(2, 16)
    with torch.no_grad():
        assert torch.allclose(load_timm(path).forward_features(x), run.encoder()(x), atol=1e-5)


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_vit_b_export_loads_through_create_model_with_local_pretrained_file(tmp_path, no_hub):
    import timm

    enc, kwargs = _vit(224, 16, 768, 12, 12)
    path = save_encoder(enc, tmp_path / "vitb.safetensors", kwargs)
    model = timm.create_model("vit_base_patch16_224", num_classes=0, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path))).eval()
    # timm drops strictness when num_classes differs from the pretrained head: check every key
    ours, theirs = enc.state_dict(), model.state_dict()
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = _images(2, 224)
    with torch.no_grad():
        assert (model.forward_features(x) - enc(x)).abs().max().item() < 1e-5


def test_export_cli_writes_file_and_prints_json(quick_run, tmp_path, capsys):
    out = tmp_path / "sub" / "enc.safetensors"
    code = cli_main(["export", "--checkpoint", str(quick_run), "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and out.is_file()
    assert printed["out"] == str(out) and printed["timm_kwargs"]["embed_dim"] == 32


@pytest.mark.parametrize("argv, needle", [
    (["--checkpoint", "missing/run", "--out", "x.safetensors"], "missing/run"),
    (["--checkpoint", "RUN", "--out", "enc.pt"], ".safetensors"),
])
def test_export_cli_bad_input_exits_2_with_one_line(quick_run, tmp_path, capsys, argv, needle):
    argv = [str(quick_run) if a == "RUN" else a for a in argv]
    code = cli_main(["export", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and needle in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "enc.pt").exists()


def test_export_refuses_a_run_without_the_teacher(tmp_path):
    run = random_init_run(QUICK, ["method.target=pixels", "method.pseudo_labels=none"])
    with pytest.raises(CheckpointError, match="no teacher"):
        export_timm(run, tmp_path / "enc.safetensors", encoder="labelling")


# --- timm-dir: a folder timm loads by name --------------------------------------------------


@pytest.fixture
def umask_022():
    import os
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("which", ["student", "labelling"])
def test_timm_dir_export_loads_by_name_with_features_equal_to_the_checkpoints(
        quick_run, tmp_path, no_hub, which):
    import timm

    run = load_run(quick_run)
    out = export_timm(quick_run, tmp_path / "enc", encoder=which, fmt="timm-dir")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    model = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=0).eval()
    # every tensor arrives (timm would load non-strictly if num_classes disagreed)
    ours, theirs = run.encoder(which).state_dict(), model.state_dict()
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k].float(), theirs[k]) for k in ours)
    x = _images(4, run.cfg.model.img_size)
    with torch.no_grad():
        tokens = run.encoder(which)(x)
        assert torch.allclose(model.forward_features(x), tokens, atol=1e-5)
        # the pooled feature timm hands a downstream head: the class token after the final norm
        assert torch.allclose(model(x), tokens[:, 0], atol=1e-5)
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == 0 and tuple(cfg["input_size"]) == (3, 16, 16)
    assert tuple(cfg["mean"]) == (0.485, 0.456, 0.406) and tuple(cfg["std"]) == (0.229, 0.224,
                                                                               0.225)


def test_timm_dir_of_a_registered_shape_names_that_model(tmp_path, no_hub):
    import timm
    from plaml_lab.export import save_timm_dir

    enc, kwargs = _vit(32, 4, 192, 12, 3)
    out = save_timm_dir(enc, tmp_path / "tiny", kwargs)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "vit_base_patch16_224"  # no vit_tiny_patch4_32 in timm
    enc, kwargs = _vit(224, 16, 192, 12, 3)
    out = save_timm_dir(enc, tmp_path / "tiny224", kwargs)
    assert json.loads((out / "config.json").read_text())["architecture"] == "vit_tiny_patch16_224"
    model = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=0).eval()
    x = _images(1, 224)
    with torch.no_grad():
        assert (model.forward_features(x) - enc(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize("fmt", ["safetensors", "timm-dir"])
def test_exported_files_are_readable_by_group_and_others_under_umask_022(quick_run, tmp_path,
                                                                         umask_022, fmt):
    out = export_timm(quick_run, tmp_path / ("enc" if fmt == "timm-dir" else "enc.safetensors"),
                      fmt=fmt)
    files = sorted(out.iterdir()) if out.is_dir() else [out]
    assert files and {f.stat().st_mode & 0o777 for f in files} == {0o644}


def test_export_cli_timm_dir_prints_how_to_load_it(quick_run, tmp_path, capsys):
    out = tmp_path / "enc"
    code = cli_main(["export", "--checkpoint", str(quick_run), "--out", str(out),
                     "--format", "timm-dir"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert printed["load"] == f'timm.create_model("local-dir:{out}", pretrained=True, num_classes=0)'
    assert printed["timm_kwargs"]["embed_dim"] == 32


@pytest.mark.parametrize("setup, needle", [("file", "is a file"), ("other", "notes.txt")])
def test_timm_dir_export_refuses_a_file_or_a_foreign_folder_and_keeps_it(
        quick_run, tmp_path, capsys, setup, needle):
    out = tmp_path / "enc"
    if setup == "file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    code = cli_main(["export", "--checkpoint", str(quick_run), "--out", str(out),
                     "--format", "timm-dir"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and needle in err
    assert len(err.strip().splitlines()) == 1
    kept = out if setup == "file" else out / "notes.txt"
    assert kept.read_text() == "keep me" and not (tmp_path / "enc" / "config.json").exists()
