"""Model parts: timm names, sin-cos positions, heads, EMA teachers."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from plaml_lab.config import load_config
from plaml_lab.method import PLAML, PLHead, ViTEncoder, ema_update
from plaml_lab.method.vit import get_2d_sincos_pos_embed
from plaml_lab.optim import param_groups


def test_encoder_uses_timm_parameter_names():
    keys = set(ViTEncoder(16, 4, 3, 32, 2, 2).state_dict())
    for k in ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
              "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias",
              "norm.weight", "norm.bias"):
        assert k in keys


def test_decoder_uses_reference_mae_names(quick_cfg):
    quick_cfg.method.target = "pixels"
    keys = set(PLAML.from_config(quick_cfg).student.state_dict())
    for k in ("mask_token", "decoder_pos_embed", "decoder_embed.weight",
              "decoder_blocks.0.attn.qkv.weight", "decoder_norm.weight", "decoder_pred.weight"):
        assert k in keys


def test_sincos_position_embedding_is_fixed_and_has_zero_class_slot():
    pe = get_2d_sincos_pos_embed(16, 4)
    assert pe.shape == (17, 16)
    assert torch.equal(pe[0], torch.zeros(16))
    # first half encodes the column (w), second half the row (h): rows 0 and 1 of the grid
    # share the column embedding
    assert torch.allclose(pe[1, :8], pe[1 + 4, :8]) and not torch.allclose(pe[1, 8:], pe[5, 8:])
    enc = ViTEncoder(16, 4, 3, 16, 1, 2)
    assert not enc.pos_embed.requires_grad


def test_embed_of_the_visible_subset_equals_the_full_embed_at_the_kept_positions():
    """Positions are added before the gather: a kept token carries its own position."""
    enc = ViTEncoder(16, 4, 3, 32, 1, 2).eval()
    x = torch.randn(2, 3, 16, 16)
    ids_keep = torch.tensor([[0, 5, 7], [3, 2, 15]])
    emb = enc.embed(x, ids_keep)
    full = enc.embed(x)
    for b in range(2):
        assert torch.allclose(emb[b, 1:], full[b, 1 + ids_keep[b]])
    assert torch.allclose(emb[:, 0], full[:, 0])


def _patch_pixels(x: torch.Tensor, b: int, idx: int, p: int = 4, grid: int = 4) -> torch.Tensor:
    r, c = divmod(idx, grid)
    return x[b, :, r * p:(r + 1) * p, c * p:(c + 1) * p]


def test_the_encoder_sees_only_visible_patches_and_follows_the_order_of_ids_keep():
    """Through every block: new pixels in the hidden patches change nothing, new pixels in a
    visible patch change the output, and permuting ids_keep permutes the data tokens out."""
    torch.manual_seed(0)
    enc = ViTEncoder(16, 4, 3, 32, 2, 2).eval()
    x = torch.randn(2, 3, 16, 16)
    ids_keep = torch.tensor([[0, 5, 7], [3, 2, 15]])
    out, _ = enc.forward_features(x, ids_keep)
    other = x.clone()
    for b in range(2):
        for idx in set(range(16)) - set(ids_keep[b].tolist()):
            _patch_pixels(other, b, idx).normal_()
    torch.testing.assert_close(enc.forward_features(other, ids_keep)[0], out)
    seen = x.clone()
    _patch_pixels(seen, 0, 5).normal_()
    assert not torch.allclose(enc.forward_features(seen, ids_keep)[0][0], out[0])
    perm = torch.tensor([2, 0, 1])
    permuted, _ = enc.forward_features(x, ids_keep[:, perm])
    torch.testing.assert_close(permuted[:, 1:], out[:, 1 + perm])
    torch.testing.assert_close(permuted[:, 0], out[:, 0])


def test_head_outputs_cosine_scores_to_unit_prototypes():
    head = PLHead(32, 10, 64, 16, 3)
    s = head(torch.randn(5, 32))
    assert s.shape == (5, 10)
    assert (s.abs() <= 1 + 1e-5).all()  # cosine similarities


def test_shared_head_is_one_module(quick_cfg):
    quick_cfg.pl.shared_head = True
    s = PLAML.from_config(quick_cfg).student
    assert s.heads["cls"] is s.heads["patch"]
    quick_cfg.pl.shared_head = False
    s = PLAML.from_config(quick_cfg).student
    assert s.heads["cls"] is not s.heads["patch"]


def test_ema_update_equals_the_formula():
    t = [torch.randn(3, 4), torch.randn(5)]
    s = [torch.randn(3, 4), torch.randn(5)]
    expected = [0.9 * a + 0.1 * b for a, b in zip(t, s)]
    ema_update(t, s, 0.9)
    for a, e in zip(t, expected):
        assert torch.allclose(a, e, atol=1e-7)


def test_teacher_update_applies_formula_to_every_parameter(quick_cfg):
    m = PLAML.from_config(quick_cfg)
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(torch.randn_like(p))
    before = copy.deepcopy(m.teachers["labelling"].state_dict())
    student = m.student.state_dict()
    m.update_teachers({"labelling": 0.7, "reconstruction": 0.9})
    after = m.teachers["labelling"].state_dict()
    for k, v in after.items():
        assert torch.allclose(v, 0.7 * before[k] + 0.3 * student[k], atol=1e-6), k


def test_teachers_receive_no_gradients_and_are_not_in_the_optimiser(quick_cfg):
    m = PLAML.from_config(quick_cfg).train()
    x = torch.randn(4, 3, 16, 16)
    out = m([x, x.flip(-1)], 0.04)
    out["loss"].backward()
    for t in m.teachers.values():
        assert not t.training
        for p in t.parameters():
            assert not p.requires_grad and p.grad is None
    opt_params = {id(p) for g in param_groups(m, 0.05) for p in g["params"]}
    teacher_params = {id(p) for t in m.teachers.values() for p in t.parameters()}
    assert not (opt_params & teacher_params)
    student_trainable = {id(p) for p in m.student.parameters() if p.requires_grad}
    assert opt_params == student_trainable


def test_no_weight_decay_on_1d_params_tokens_and_positions(quick_cfg):
    m = PLAML.from_config(quick_cfg)
    decay, no_decay = param_groups(m, 0.05)
    names = {id(p): n for n, p in m.student.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert "encoder.cls_token" in nd and "mask_token" in nd
    assert all(not n.endswith(".bias") for n in d)
    assert "encoder.blocks.0.attn.qkv.weight" in d
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    # fixed position embeddings are not trained at all
    assert "encoder.pos_embed" not in nd | d and "decoder_pos_embed" not in nd | d


def test_variant_parts_follow_method_switches():
    def parts(*o):
        cfg = load_config(None, list(o))
        s = PLAML.from_config(cfg).student
        return (s.decoder_pred is not None, s.token_pred is not None,
                sorted(s.heads) if s.heads is not None else [])
    assert parts("method.target=pixels", "method.pseudo_labels=none") == (True, False, [])
    assert parts("method.pseudo_labels=none") == (False, True, [])
    assert parts() == (False, True, ["cls", "patch"])
    assert parts("method.target=none", "method.pseudo_labels=cls") == (False, False, ["cls"])


def test_dino_prototype_init_keeps_nn_linear_default_and_trunc_normal_is_smaller():
    torch.manual_seed(0)
    dino = PLHead(32, 128, 64, 64, prototype_init="dino").prototypes.weight
    torch.manual_seed(0)
    tn = PLHead(32, 128, 64, 64, prototype_init="trunc_normal").prototypes.weight
    assert tn.std().item() == pytest.approx(0.02, rel=0.1)
    bound = 1 / math.sqrt(64)  # nn.Linear: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in))
    assert dino.abs().max().item() <= bound and dino.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    assert dino.norm(dim=1).mean() / tn.norm(dim=1).mean() > 3.5
