"""run.precision=auto resolves from the device's capabilities (plaml_lab.hardware): bf16 only
where it runs natively, a warning where a forced precision would be emulated, and a run that
records what it used."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from plaml_lab import hardware
from plaml_lab.config import ConfigError, load_config
from plaml_lab.method.vit import fused_attention


def _cpu(monkeypatch, *, bf16: bool, fp16: bool = False, isa: str = "AVX2") -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: bf16)
    monkeypatch.setattr(hardware, "cpu_has_native_fp16", lambda: fp16)
    monkeypatch.setattr(hardware, "cpu_capability", lambda: isa)


@pytest.mark.parametrize("native, expected", [(False, "fp32"), (True, "bf16")])
def test_auto_on_cpu_is_bf16_only_with_native_bf16(monkeypatch, native, expected):
    _cpu(monkeypatch, bf16=native, isa="AVX512" if native else "AVX2")
    p = hardware.resolve_precision("auto", "cpu")
    assert p.name == expected
    assert p.requested == "auto" and p.reason.startswith("auto:")
    assert ("no native bf16" in p.reason) == (not native)


@pytest.mark.parametrize("bf16, expected, scaler", [(True, "bf16", False), (False, "fp16", True)])
def test_auto_on_cuda_is_bf16_else_fp16_with_the_scaler(monkeypatch, bf16, expected, scaler):
    monkeypatch.setattr(hardware, "cuda_has_bf16", lambda: bf16)
    p = hardware.resolve_precision("auto", "cuda")
    assert (p.name, p.uses_scaler) == (expected, scaler)


@pytest.mark.parametrize("autocast_ok, expected", [(True, "fp16"), (False, "fp32")])
def test_auto_on_mps_uses_fp16_autocast_where_torch_has_it(monkeypatch, autocast_ok, expected):
    monkeypatch.setattr(hardware, "mps_has_autocast", lambda: autocast_ok)
    assert hardware.resolve_precision("auto", "mps").name == expected


def test_a_forced_precision_is_kept_whatever_the_device(monkeypatch):
    _cpu(monkeypatch, bf16=False)
    monkeypatch.setattr(hardware, "cuda_has_bf16", lambda: False)
    for device in ("cpu", "cuda", "mps"):
        for name in ("fp32", "bf16", "fp16"):
            assert hardware.resolve_precision(name, device).name == name


def test_the_native_bf16_probe_needs_onednn_and_the_isa(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not hardware.cpu_has_native_bf16()  # AVX512 without BF16: oneDNN would emulate it
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert hardware.cpu_has_native_bf16()
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert not hardware.cpu_has_native_bf16()


def test_forcing_bf16_on_a_cpu_without_it_warns_in_one_line(monkeypatch):
    _cpu(monkeypatch, bf16=False)
    p = hardware.resolve_precision("bf16", "cpu")
    with pytest.warns(hardware.PrecisionWarning, match="emulated") as rec:
        hardware.warn_if_emulated(p, "cpu")
    assert "\n" not in str(rec[0].message) and "run.precision=bf16" in str(rec[0].message)


@pytest.mark.parametrize("requested, native", [("auto", False), ("bf16", True), ("fp32", False)])
def test_no_warning_where_the_cpu_runs_the_precision_natively(monkeypatch, requested, native):
    _cpu(monkeypatch, bf16=native)
    p = hardware.resolve_precision(requested, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hardware.warn_if_emulated(p, "cpu")


def test_attention_auto_follows_the_resolved_precision(monkeypatch):
    # explicit matmuls only where a CPU step runs under bf16/fp16 autocast
    _cpu(monkeypatch, bf16=True)
    assert fused_attention("auto", "cpu", hardware.resolve_precision("auto", "cpu").name) is False
    _cpu(monkeypatch, bf16=False)
    assert fused_attention("auto", "cpu", hardware.resolve_precision("auto", "cpu").name) is True
    assert fused_attention("auto", "cpu", "bf16") is False
    with pytest.raises(ValueError, match="resolve 'auto' first"):  # the method never probes
        fused_attention("auto", "cpu", "auto")


def test_config_default_and_every_preset_use_auto(root):
    assert load_config(None).run.precision == "auto"
    presets = sorted((root / "experiments" / "configs").glob("*.yaml"))
    assert presets
    for path in presets:
        assert load_config(path).run.precision == "auto", path.name


def test_an_unknown_precision_is_a_one_line_error_naming_the_key():
    with pytest.raises(ConfigError, match="run.precision"):
        load_config(None, ["run.precision=fp8"])


def test_a_run_records_the_resolved_precision_and_why(tmp_path, quick_yaml, monkeypatch, capsys):
    from plaml_lab.train import pretrain
    _cpu(monkeypatch, bf16=False)
    out = tmp_path / "run"
    s = pretrain(quick_yaml, out, ["run.max_steps=2", "run.log_every=1", "run.eval_knn=false",
                                   "run.num_threads=1"])
    assert (s["precision"], s["precision_reason"].startswith("auto:")) == ("fp32", True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["precision"] for r in rows] == ["fp32", "fp32"]
    assert "precision: fp32 on cpu (auto:" in capsys.readouterr().out
    # the saved config keeps the request, so a resume elsewhere re-resolves it
    assert "precision: auto" in (out / "config.yaml").read_text()


def test_resume_on_a_machine_with_another_precision_goes_on(tmp_path, quick_yaml):
    """A run started in fp16 (GradScaler state in the checkpoint) and resumed in fp32, and the
    reverse (empty scaler state), both continue to the end."""
    from plaml_lab.train import pretrain
    common = ["run.log_every=1", "run.eval_knn=false", "run.num_threads=1", "run.ckpt_every=2"]
    for first, second in (("fp16", "fp32"), ("fp32", "fp16")):
        out = tmp_path / f"{first}-{second}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hardware.PrecisionWarning)
            pretrain(quick_yaml, out, common + ["run.max_steps=2", f"run.precision={first}"])
            s = pretrain(quick_yaml, out, common + ["run.max_steps=4", f"run.precision={second}"])
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert s["steps"] == 4 and s["precision"] == second
        assert [r["precision"] for r in rows] == [first, first, second, second]
