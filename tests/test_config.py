"""Config tree: YAML presets, dotted overrides with type conversion, validation messages."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
import warnings

import pytest

from plaml_lab.config import (ConfigError, ConfigWarning, PretrainConfig, apply_overrides, diff, from_dict,
                              load_config, save_yaml, to_dict)


def test_presets_load_and_validate(root):
    for name in ("quick", "lab", "vit_s16_in1k", "vit_b16_in1k"):
        cfg = load_config(root / "experiments" / "configs" / f"{name}.yaml")
        assert isinstance(cfg, PretrainConfig)


def test_overrides_convert_types():
    cfg = load_config(None, ["mask.ratio=0.6", "model.depth=3", "pl.shared_head=true",
                             "method.teachers=single", "teachers.labelling.momentum=0.99",
                             "optim.epochs=2"])
    assert cfg.mask.ratio == 0.6 and isinstance(cfg.mask.ratio, float)
    assert cfg.model.depth == 3 and isinstance(cfg.model.depth, int)
    assert cfg.pl.shared_head is True
    assert cfg.method.teachers == "single"
    assert cfg.teachers.labelling.momentum == 0.99
    assert cfg.optim.epochs == 2.0 and isinstance(cfg.optim.epochs, float)


def test_yaml_round_trip_preserves_every_value(tmp_path):
    cfg = load_config(None, ["mask.ratio=0.5", "rec.target_layers=2", "data.views=1"])
    save_yaml(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert diff(cfg, again) == []
    assert to_dict(again) == to_dict(cfg)


def test_diff_names_changed_keys():
    a = load_config(None, [])
    b = load_config(None, ["mask.ratio=0.5", "teachers.reconstruction.momentum=0.9"])
    assert diff(a, b) == ["mask.ratio", "teachers.reconstruction.momentum"]


BAD = [
    (["mask.ratoi=0.5"], "mask.ratoi"),  # unknown key (typo)
    (["nosection.x=1"], "nosection.x"),
    (["mask.ratio=abc"], "mask.ratio"),  # wrong type
    (["model.depth=2.5"], "model.depth"),
    (["pl.shared_head=maybe"], "pl.shared_head"),
    (["mask.ratio=1.0"], "mask.ratio"),  # out of range
    (["mask.ratio=0"], "mask.ratio"),
    (["model.img_size=30"], "model.img_size"),  # not divisible by patch 4
    (["model.num_heads=5"], "model.num_heads"),  # does not divide 192
    (["model.decoder_num_heads=3"], "model.decoder_num_heads"),
    (["teachers.labelling.momentum=1.5"], "teachers.labelling.momentum"),
    (["teachers.reconstruction.momentum_end=-0.1"], "teachers.reconstruction.momentum_end"),
    (["method.target=voxels"], "method.target"),
    (["method.pseudo_labels=all"], "method.pseudo_labels"),
    (["method.teachers=triple"], "method.teachers"),
    (["method.target=none", "method.pseudo_labels=none"], "method.pseudo_labels"),
    (["run.precision=fp8"], "run.precision"),
    (["run.device=tpu"], "run.device"),
    (["data.dataset=imagenet"], "data.dataset"),
    (["data.views=3"], "data.views"),
    (["data.dataset=folder"], "data.root"),
    (["rec.target_layers=99"], "rec.target_layers"),
    (["rec.loss=l3"], "rec.loss"),
    (["pl.assignment=kmeans"], "pl.assignment"),
    (["optim.batch_size=0"], "optim.batch_size"),
    (["optim.accum_steps=0"], "optim.accum_steps"),
    (["mask.strategy=grid"], "mask.strategy"),
    (["data.shapes.palette=sepia"], "data.shapes.palette"),
    (["data.aug.invert_p=1.5"], "data.aug.invert_p"),
    (["data.aug.tone_remap_p=-0.1"], "data.aug.tone_remap_p"),
    (["data.aug.tone_remap_knots=0"], "data.aug.tone_remap_knots"),
    (["data.aug.channel_shuffle_p=-0.1"], "data.aug.channel_shuffle_p"),
    (["data.aug.shared_crop=sometimes"], "data.aug.shared_crop"),
    (["pl.prototype_init=xavier"], "pl.prototype_init"),
    (["pl.patch_teacher_temp=-0.1"], "pl.patch_teacher_temp"),
    (["pl.teacher_temp=0"], "pl.teacher_temp"),
    (["pl.freeze_prototypes_epochs=-1"], "pl.freeze_prototypes_epochs"),
    (["optim.clip_mode=layer"], "optim.clip_mode"),
    (["optim.clip_grad=-1"], "optim.clip_grad"),
    (["rec.loss_scale=sum"], "rec.loss_scale"),
    (["rec.target_norm=batch"], "rec.target_norm"),
    (["teachers.labelling.window=1.5"], "teachers.labelling.window"),
    (["teachers.reconstruction.window_end=-0.2"], "teachers.reconstruction.window_end"),
    (["mask"], "mask"),  # not key=value
    (["mask=0.5"], "mask"),  # a section, not a key
]


@pytest.mark.parametrize("overrides,key", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_every_validation_error_names_its_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    msg = str(info.value)
    assert key in msg
    assert "\n" not in msg  # one line, printable as `error: ...`


def test_error_states_value_and_allowed_range():
    with pytest.raises(ConfigError, match=r"mask.ratio=1.2: must be in \(0, 1\)"):
        load_config(None, ["mask.ratio=1.2"])
    with pytest.raises(ConfigError, match=r"allowed values are pixels\|tokens\|none"):
        load_config(None, ["method.target=x"])


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError, match="did you mean mask.ratio"):
        load_config(None, ["mask.ratoi=0.5"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("mask:\n  ratio: [0.5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line"):
        load_config(p)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_teacher_roles_follow_method_switches():
    roles = lambda *o: load_config(None, list(o)).teacher_roles  # noqa: E731
    assert roles() == {"labelling": "labelling", "reconstruction": "reconstruction"}
    assert roles("method.teachers=single") == {"labelling": "labelling"}
    assert roles("method.target=pixels", "method.pseudo_labels=none") == {}
    assert roles("method.pseudo_labels=none") == {"reconstruction": "reconstruction"}
    assert roles("method.target=none") == {"labelling": "labelling"}


def test_from_dict_fills_defaults_for_missing_sections():
    cfg = from_dict({"mask": {"ratio": 0.5}})
    assert cfg.mask.ratio == 0.5 and cfg.model.depth == PretrainConfig().model.depth
    assert apply_overrides({}, ["mask.ratio=0.4"]) == {"mask": {"ratio": 0.4}}


def test_a_knob_the_variant_never_reads_is_warned_naming_the_key():
    quick = "experiments/configs/quick.yaml"
    with pytest.warns(ConfigWarning, match=r"teachers.reconstruction.momentum is not read: .*"
                                           r"method.teachers=single"):
        load_config(quick, ["method.teachers=single", "teachers.reconstruction.momentum=0.5"])
    with pytest.warns(ConfigWarning, match=r"rec.loss is not read: method.target=pixels"):
        load_config(quick, ["method.target=pixels", "rec.loss=cosine"])
    with pytest.warns(ConfigWarning, match=r"pl.sinkhorn_iters is not read: pl.assignment=centering"):
        load_config(quick, ["pl.sinkhorn_iters=5"])
    with warnings.catch_warnings():  # knobs the variant reads stay silent
        warnings.simplefilter("error")
        load_config(quick, ["method.teachers=dual", "teachers.reconstruction.momentum=0.5",
                            "pl.assignment=sinkhorn", "pl.sinkhorn_iters=5", "rec.loss=cosine"])


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_the_cli_prints_an_unread_knob_as_one_warning_line(root):
    proc = subprocess.run(
        [sys.executable, "-m", "plaml_lab", "eval", "--random-init", "--config",
         "experiments/configs/quick.yaml", "--probes", "knn", "--no-progress",
         "method.teachers=single", "teachers.reconstruction.momentum=0.5", "eval.max_train=64",
         "eval.max_val=32", "data.num_train=64", "data.num_val=32"],
        capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "teachers.reconstruction" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: teachers.reconstruction.momentum "
                                                   "is not read"), proc.stderr


def test_every_numeric_knob_declares_its_range_beside_the_field():
    """Limits live with the field (config.knob), so validation needs no list of its own."""
    unbounded = {"run.seed", "data.seed_data", "finetune.seed"}  # any integer seeds the generators
    missing = []

    def walk(cls, prefix=""):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
            elif tp in (int, float) and "range" not in f.metadata:
                missing.append(prefix + f.name)

    walk(PretrainConfig)
    assert sorted(missing) == sorted(unbounded)
