"""Benchmark harness: the smoke run of `plaml-lab bench`, and the pieces its figures rest on
(FLOP counting, peak memory, paired ratios, the attention implementations)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from plaml_lab import hardware
from plaml_lab.lab import bench, bench_table, measure
from plaml_lab.cli import main
from plaml_lab.method import PLAML, ViTEncoder
from plaml_lab.method.vit import fused_attention


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_bench_cli_writes_a_complete_table_of_finite_figures_for_every_variant(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    rc = main(["bench", "--preset", "experiments/configs/quick.yaml", "--steps", "2",
               "--warmup", "1", "--precisions", "fp32", "--csv", str(out),
               "run.num_threads=1"])
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["variant"] for r in rows] == list(bench.VARIANTS)
    assert set(bench_table.CSV_COLUMNS) <= set(rows[0])
    for r in rows:
        for col in ("batch", "step_ms", "imgs_per_s", "peak_mem_mb", "gflop_per_step",
                    "gflop_per_s", "mfu", "matmul_gflop_per_s"):
            v = float(r[col])
            assert math.isfinite(v) and v > 0, (r["variant"], col, r[col])
        has_teachers = r["variant"] not in ("mae",)
        assert (float(r["ema_ms"]) > 0) == has_teachers and math.isfinite(float(r["ema_ms"]))
        assert r["device"] == "cpu" and r["precision"] == "fp32"
    printed = capsys.readouterr().out
    assert all(v in printed for v in bench.VARIANTS) and "dual/mae FLOP/s" in printed


@pytest.mark.parametrize("native, expected", [(False, "fp32"), (True, "bf16")])
def test_bench_precision_auto_is_the_precision_a_run_on_this_cpu_would_use(
        tmp_path, monkeypatch, native, expected):
    """auto is benchmarked as what run.precision=auto resolves to: the probe's answer, mocked
    both ways (the CPU running the test decides nothing)."""
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    out = tmp_path / "bench.csv"
    rc = main(["bench", "--preset", "experiments/configs/quick.yaml", "--variants", "mae",
               "--precisions", "auto", "--steps", "1", "--warmup", "0", "--no-memory",
               "--matmul-n", "64", "--csv", str(out), "run.num_threads=1"])
    assert rc == 0
    assert [r["precision"] for r in csv.DictReader(out.open())] == [expected]


def test_flop_count_of_an_encoder_forward_equals_the_transformer_formula():
    """Independent count: patch embedding 2*L*(p*p*C)*D; per block 2*N*(3D*D + D*D + 2*D*4D)
    for the linears and 2*2*N*N*D for q@k^T and attn@v, for N = L + 1 tokens."""
    B, img, p, D, depth, heads = 2, 16, 4, 32, 2, 2
    enc = ViTEncoder(img, p, 3, D, depth, heads).eval()
    x = torch.randn(B, 3, img, img)
    L = (img // p) ** 2
    N = L + 1
    per_block = 2 * N * (3 * D * D + D * D + 2 * D * 4 * D) + 2 * 2 * N * N * D
    expected = B * (2 * L * p * p * 3 * D + depth * per_block)
    for impl in ("sdpa", "math"):  # the count must not depend on the attention kernel
        for blk in enc.blocks:
            blk.attn.fused_attn = impl == "sdpa"
        with torch.no_grad():
            assert bench.count_flops(lambda: enc(x)) == expected, impl


def test_peak_memory_reports_the_growth_of_a_64_mb_tensor():
    device = torch.device("cpu")
    with measure.exact_rss(device), measure.PeakMemory(device) as pm:
        t = torch.ones(16 * 2**20)  # 64 MiB of float32, touched
        del t
    if pm.mb is None:
        pytest.skip("no /proc/self/clear_refs on this system")
    assert 60 <= pm.mb <= 80


def test_paired_ratios_divide_same_round_times_and_scale_by_flops():
    # the dual step takes exactly 3x the mae step in every round, whatever the round's noise
    rounds = [{("mae", "bf16"): (t, t), ("dual", "bf16"): (3 * t, 3 * t)} for t in (1, 5, 2, 9)]
    flops = {("mae", "bf16"): 10.0, ("dual", "bf16"): 33.0}
    rows = [{"variant": v, "precision": "bf16", "peak_mem_mb": 1.0, "ema_ms": 0.1, "step_ms": 10}
            for v in ("mae", "dual")]
    r = {x["ratio"]: x for x in bench_table.paired_ratios(rows, rounds, flops)}
    assert r["dual/mae FLOP/s [bf16]"]["wall"] == pytest.approx(33 / 3 / 10)
    assert r["dual/mae FLOP/s [bf16]"]["wall_iqr"] == pytest.approx(0)
    assert r["EMA of all teachers / dual step [bf16]"]["wall"] == pytest.approx(0.01)


def test_attention_impls_agree_and_auto_avoids_sdpa_only_on_cpu_under_autocast():
    assert not fused_attention("auto", "cpu", "bf16") and not fused_attention("auto", "cpu", "fp16")
    assert fused_attention("auto", "cpu", "fp32") and fused_attention("auto", "cuda", "bf16")
    assert fused_attention("sdpa", "cpu", "bf16") and not fused_attention("math", "cuda")
    enc = ViTEncoder(16, 4, 3, 32, 2, 2, attn_impl="math").eval()
    assert not any(b.attn.fused_attn for b in enc.blocks)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = enc(x)
        for b in enc.blocks:
            b.attn.fused_attn = True
        fused = enc(x)
    assert torch.allclose(ref, fused, atol=1e-5)
    enc.to("cpu")  # moving a model leaves its kernels alone: the step's owner picks them
    assert all(b.attn.fused_attn for b in enc.blocks)


def test_the_step_picks_attention_for_its_device_and_precision(quick_cfg):
    """PLAML.set_attention reaches the student's encoder and decoder and every teacher: under
    bf16 on a CPU every block takes the explicit matmuls, in fp32 SDPA (attn_impl=auto)."""
    model = PLAML.from_config(quick_cfg)
    blocks = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert len(blocks) > len(model.student.encoder.blocks) * 2  # student, decoder, teachers
    assert all(b.fused_attn for b in blocks)  # built for fp32
    model.set_attention("cpu", "bf16")
    assert not any(b.fused_attn for b in blocks)
    model.set_attention("cpu", "fp32")
    assert all(b.fused_attn for b in blocks)


def test_bench_rejects_an_unknown_variant_with_exit_code_2(capsys):
    assert main(["bench", "--preset", "experiments/configs/quick.yaml", "--variants", "dino"]) == 2
    assert "unknown variant 'dino'" in capsys.readouterr().err


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
def test_flops_per_step_counted_at_a_small_batch_equal_the_full_batch_count(quick_cfg):
    """The harness counts at batch 4 and scales; that is only right if FLOPs are linear in the
    batch for every variant."""
    device = torch.device("cpu")
    for variant in ("mae", "dual", "plonly"):
        cfg = bench.variant_config(bench.to_dict(quick_cfg), variant, "fp32", [], batch=12)
        full = bench.count_flops(bench.build_case(cfg, device, variant).step)
        assert bench.flops_per_step(cfg, lambda c, v=variant: bench.build_case(c, device, v),
                                    device) == pytest.approx(full, rel=1e-12), variant
