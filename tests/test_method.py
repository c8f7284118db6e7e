"""The method end to end on the quick preset: teachers, variants, loss parts."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from plaml_lab.config import PretrainConfig, load_config
from plaml_lab.method import PLAML, config_kwargs
from plaml_lab.method.masking import num_visible
from plaml_lab.method.rules import VARIANTS
from plaml_lab.runs import load_run
from plaml_lab.train import pretrain


def _max_abs_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.parameters(), b.parameters()))


def test_default_momenta_make_the_two_teachers_differ_after_20_steps(tmp_path, quick_yaml):
    pretrain(quick_yaml, tmp_path / "r", ["run.max_steps=20", "run.eval_knn=false"])
    m = load_run(tmp_path / "r").model
    assert _max_abs_diff(m.teachers["labelling"].encoder, m.teachers["reconstruction"].encoder) > 1e-6


def test_equal_schedules_keep_the_two_teachers_identical(tmp_path, quick_yaml):
    pretrain(quick_yaml, tmp_path / "r", ["run.max_steps=20", "run.eval_knn=false",
                                          "teachers.reconstruction.momentum=0.996",
                                          "teachers.reconstruction.momentum_end=1.0"])
    m = load_run(tmp_path / "r").model
    assert _max_abs_diff(m.teachers["labelling"].encoder, m.teachers["reconstruction"].encoder) == 0.0


@pytest.mark.slow  # 50 steps per variant: make test runs it, make test-fast does not
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_loss_falls_over_50_steps_on_quick(tmp_path, quick_yaml, variant):
    summary = pretrain(quick_yaml, tmp_path / variant,
                       VARIANTS[variant] + ["run.max_steps=50", "run.log_every=5",
                                            "run.eval_knn=false"])
    rows = [json.loads(line) for line in (tmp_path / variant / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(5, 51, 5))
    first = sum(r["loss"] for r in rows[:2]) / 2
    last = sum(r["loss"] for r in rows[-2:]) / 2
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert last < first, (variant, first, last)
    assert summary["variant"] == variant


def test_plaml_defaults_are_the_config_defaults():
    # PLAML() in someone else's loop and `plaml-lab pretrain` with no overrides build one model
    defaults = {name: p.default for name, p in inspect.signature(PLAML).parameters.items()}
    assert defaults == config_kwargs(PretrainConfig())


@pytest.mark.parametrize("kwargs, message", [
    (dict(target="none", pseudo_labels="none"), "nothing to learn"),
    (dict(teachers="triple"), "method.teachers='triple'"),
    (dict(assignment="dino"), "pl.assignment='dino'"),
])
def test_plaml_rejects_a_variant_or_assignment_it_does_not_know_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PLAML(**kwargs)


def test_forward_reads_no_config_the_model_keeps_none():
    model = PLAML(img_size=16, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32,
                  decoder_num_heads=2, num_prototypes=16, head_hidden_dim=32,
                  head_bottleneck_dim=16)
    assert not any(isinstance(v, PretrainConfig) for v in vars(model).values())
    out = model([torch.randn(2, 3, 16, 16)] * 2, 0.04)
    assert set(out) == {"loss", "loss_rec", "loss_cls", "loss_patch"}


def test_loss_parts_present_exactly_when_switched_on():
    x = torch.randn(4, 3, 16, 16)
    for name, ov in VARIANTS.items():
        cfg = load_config("experiments/configs/quick.yaml", ov)
        with torch.no_grad():
            out = PLAML.from_config(cfg)([x, x.flip(-1)], 0.04)
        assert (float(out["loss_rec"]) > 0) == (cfg.method.target != "none"), name
        assert (float(out["loss_cls"]) > 0) == cfg.pl_cls, name
        assert (float(out["loss_patch"]) > 0) == cfg.pl_patch, name
        total = out["loss_rec"] + out["loss_cls"] + out["loss_patch"]
        assert torch.allclose(out["loss"], total)


def test_the_total_loss_is_linear_in_the_three_weights_and_each_weight_scales_its_own_part():
    """Only the total is read: with one weight at 1 and the others at 0 it is that part alone;
    any weights give the same combination of those three totals, and the part it reports."""
    x = torch.randn(4, 3, 16, 16)

    def total(w_rec, w_cls, w_patch, key="loss"):
        cfg = load_config("experiments/configs/quick.yaml",
                          [f"loss.w_rec={w_rec}", f"loss.w_cls={w_cls}", f"loss.w_patch={w_patch}"])
        torch.manual_seed(0)  # the same weights for every model
        model = PLAML.from_config(cfg).eval()  # eval: no center update between the calls
        with torch.no_grad():
            return model([x, x.flip(-1)], 0.04, generator=torch.Generator().manual_seed(0))[key]

    rec, cls, patch = total(1, 0, 0), total(0, 1, 0), total(0, 0, 1)
    assert min(float(rec), float(cls), float(patch)) > 0
    assert len({float(rec), float(cls), float(patch)}) == 3  # three different parts
    torch.testing.assert_close(total(2, 0.5, 3), 2 * rec + 0.5 * cls + 3 * patch)
    torch.testing.assert_close(total(2, 0.5, 3, "loss_patch"), patch)  # parts are unweighted


def test_pixel_mode_loss_is_the_mae_loss_of_the_decoder_output():
    from plaml_lab.method import losses
    cfg = load_config("experiments/configs/quick.yaml", VARIANTS["mae"] + ["data.views=1"])
    m = PLAML.from_config(cfg)
    x = torch.randn(3, 3, 16, 16)
    out = m([x], generator=torch.Generator().manual_seed(0), return_details=True)
    ref = losses.pixel_loss(out["pred_pixels"], x, out["mask"], 4, norm_pix=True)
    assert torch.equal(out["loss_rec"], ref)


def test_teacher_sees_full_view_and_student_only_visible_tokens():
    cfg = load_config("experiments/configs/quick.yaml", ["data.views=1"])
    m = PLAML.from_config(cfg)
    x = torch.randn(2, 3, 16, 16)
    out = m([x], return_details=True)
    L = m.student.num_patches
    keep = int(L * (1 - cfg.mask.ratio))
    assert out["latent"].shape[1] == 1 + keep
    assert out["pred_tokens"].shape == (2, L - keep, cfg.model.embed_dim)
    assert out["teacher_rec"].shape == (2, L - keep, cfg.model.embed_dim)
    assert out["teacher_patch"].shape == (2, L - keep, cfg.pl.num_prototypes)
    assert torch.allclose(out["teacher_cls"].sum(-1), torch.ones(2))
    # new pixels in one hidden patch (same mask: same generator): the teachers' targets change,
    # the student's encoding does not
    m.eval()  # no center update between the two calls
    with torch.no_grad():
        a = m([x], generator=torch.Generator().manual_seed(0), return_details=True)
        hidden = int(a["ids_masked"][0, 0])
        r, c = divmod(hidden, 16 // 4)
        y = x.clone()
        y[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.0
        b = m([y], generator=torch.Generator().manual_seed(0), return_details=True)
    assert torch.equal(a["ids_masked"], b["ids_masked"])
    torch.testing.assert_close(b["latent"], a["latent"])
    assert not torch.allclose(b["teacher_rec"][0], a["teacher_rec"][0])
    assert not torch.allclose(b["teacher_cls"][0], a["teacher_cls"][0])


def test_mask_ratio_is_a_call_argument_and_the_model_is_left_alone():
    """forward(mask_ratio=r) hides round(r * L) data tokens whatever mask.ratio says; without it
    the model hides its own (the config's) ratio. Nothing is swapped on the model to get there."""
    cfg = load_config("experiments/configs/quick.yaml")
    model = PLAML.from_config(cfg).eval()
    x = torch.randn(2, 3, cfg.model.img_size, cfg.model.img_size)
    L = model.student.num_patches
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for r in (0.25, 0.5, 0.9):
            out = model([x], generator=g, mask_ratio=r, return_details=True)
            assert int(out["mask"][0].sum()) == L - num_visible(L, r), r
        default = model([x], generator=g, return_details=True)
    assert int(default["mask"][0].sum()) == L - num_visible(L, cfg.mask.ratio)
    assert model.mask_ratio == cfg.mask.ratio


def test_the_in_code_snippet_of_docs_method_trains_plaml_in_a_plain_loop(root):
    text = (root / "docs" / "method.md").read_text().split("## In code", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "steps = 100" in code
    ns: dict = {}
    torch.manual_seed(0)
    exec(code.replace("steps = 100", "steps = 2"), ns)  # two steps: the loop runs as written
    model, out = ns["model"], ns["out"]
    assert set(model.teachers) == {"labelling", "reconstruction"}
    assert all(math.isfinite(out[k].item()) for k in ("loss", "loss_rec", "loss_cls", "loss_patch"))
    torch.manual_seed(0)
    start = PLAML(img_size=32).teachers["labelling"].encoder.cls_token  # the snippet's init
    assert not torch.equal(model.teachers["labelling"].encoder.cls_token, start)  # EMA ran
