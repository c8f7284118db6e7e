"""plaml_lab.finetune: the recipe's builders, a task with a known answer, the CLI, resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from plaml_lab.cli import main as cli_main
from plaml_lab.config import ConfigError, load_config
from plaml_lab.data import ArrayDataset
from plaml_lab.export import encoder_state_dict, timm_kwargs
from plaml_lab.finetune import recipe as R
from plaml_lab.finetune.loop import Trainer, finetune
from plaml_lab.runs import load_run

QUICK = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "quick.yaml")
KW = {"img_size": 16, "patch_size": 4, "in_chans": 3, "embed_dim": 32, "depth": 4,
      "num_heads": 2, "mlp_ratio": 2.0}


def _colour_task(n: int, seed: int) -> ArrayDataset:
    """3 classes told apart by which colour channel is bright: linearly separable from the
    mean of the data tokens, whatever the crop."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = 0.25 + 0.1 * torch.rand(n, 3, 16, 16, generator=g)
    images[torch.arange(n), labels] += 0.5
    return ArrayDataset((images * 255).to(torch.uint8), labels, num_classes=3)


def test_label_subset_takes_the_same_fraction_of_every_class_and_is_fixed():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20 + [-1] * 10)
    idx = R.label_subset(labels, 0.1, seed=3)
    counts = torch.bincount(labels[idx], minlength=3).tolist()
    assert counts == [5, 3, 2]  # ceil(0.1 * n_c) per class, no unlabelled item
    assert torch.equal(idx, R.label_subset(labels, 0.1, seed=3))
    assert not torch.equal(idx, R.label_subset(labels, 0.1, seed=4))
    assert len(R.label_subset(labels, 1.0)) == 100


def test_layer_decay_gives_each_block_its_own_lr_scale_in_the_param_groups():
    model = R.build_classifier(KW, 5, None)
    opt = R.build_optimizer(model, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    scale = {}
    for group in opt.param_groups:
        for p in group["params"]:
            scale[p] = group["lr_scale"]
    named = dict(model.named_parameters())
    blocks = [scale[named[f"blocks.{i}.attn.qkv.weight"]] for i in range(4)]
    # timm's ViT layers: 0 = embeddings, 1..4 = blocks, 5 = norm + head
    assert blocks == pytest.approx([0.5 ** 4, 0.5 ** 3, 0.5 ** 2, 0.5])
    assert scale[named["head.weight"]] == 1.0
    assert scale[named["patch_embed.proj.weight"]] == pytest.approx(0.5 ** 5)
    R.set_lr(opt, 2.0)
    assert sorted({round(g["lr"], 6) for g in opt.param_groups}) == pytest.approx(
        [2 * 0.5 ** k for k in range(5, -1, -1)])


def test_blocks_k_trains_only_the_last_k_blocks_norm_and_head():
    model = R.build_classifier(KW, 5, None)
    trainable = R.freeze_for_blocks(model, 1)
    assert trainable and all(n.startswith(("blocks.3.", "norm.", "head.")) for n in trainable)
    opt = R.build_optimizer(model, 1.0, 0.05, 0.75)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(p) for n, p in model.named_parameters() if n in trainable} == in_opt
    assert R.freeze_for_blocks(model, -1) == [n for n, _ in model.named_parameters()]


def test_classifier_loads_the_encoder_strictly(quick_run):
    run = load_run(quick_run)
    state = encoder_state_dict(run.encoder())
    model = R.build_classifier(timm_kwargs(run.cfg.model), 10, state)
    assert torch.equal(model.blocks[1].mlp.fc2.weight, state["blocks.1.mlp.fc2.weight"])
    del state["norm.weight"]
    with pytest.raises(RuntimeError, match="norm.weight"):
        R.build_classifier(timm_kwargs(run.cfg.model), 10, state)


@pytest.fixture
def one_thread():
    """A tiny ViT step is faster on one thread than on two busy ones (docs/dashboards.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # seconds on 2 busy cores: make test runs it, make test-fast does not
@pytest.mark.parametrize("mix", [False, True])
def test_recipe_learns_a_linearly_separable_task(tmp_path, mix, one_thread):
    cfg = load_config(QUICK, ["model.depth=2", "model.mlp_ratio=2", "finetune.batch_size=32",
                              "finetune.blr=1e-2", "finetune.warmup_epochs=0.5",
                              "finetune.log_every=100"]
                      + ([] if mix else ["finetune.mixup=0", "finetune.cutmix=0"]))
    ft = cfg.finetune
    train = R.Subset(_colour_task(192, 0), torch.arange(192))
    val = R.Subset(_colour_task(96, 1), torch.arange(96))
    model = R.build_classifier({**KW, "depth": 2}, 3, None, drop_path=ft.drop_path)
    before = R.accuracy(model, val)["top1"]
    opt = R.build_optimizer(model, ft.blr * ft.batch_size / 256, ft.weight_decay, ft.layer_decay)
    mixing = R.build_mixing(ft, 3)
    assert (mixing is not None) == mix
    spe = len(train) // ft.batch_size
    trainer = Trainer(cfg, model, opt, mixing, R.build_criterion(ft, mixing), torch.device("cpu"),
                      tmp_path, spe, total=8 * spe, base_lr=ft.blr * ft.batch_size / 256,
                      num_classes=3, source={})
    (tmp_path / "checkpoints").mkdir()
    assert trainer.train(train, 0, progress=False, stop_after=None) == 8 * spe
    after = R.accuracy(model, val)
    # top-1 alone would pass on a head that barely moved (argmax needs only the sign): the
    # held-out loss must fall far below chance's log(3) = 1.10 too
    assert before < 0.5 and after["top1"] >= 0.95 and after["loss"] < 0.5, (before, after)


def _ft(argv, capsys):
    code = cli_main(["finetune", "--no-progress", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FAST = ["run.num_threads=1", "finetune.epochs=1", "finetune.batch_size=64",
        "finetune.log_every=4", "eval.max_val=128"]


def test_finetune_cli_prints_one_json_object_and_writes_a_run_folder(quick_run, tmp_path, capsys):
    code, out, _ = _ft(["--checkpoint", str(quick_run), "--out", str(tmp_path / "ft"),
                        "--fraction", "0.5", "--blocks", "1", *FAST], capsys)
    res = json.loads(out)
    assert code == 0 and 0 <= res["finetune_top1"] <= 1 and res["num_val"] == 128
    assert 512 <= res["num_train"] < 522 and res["blocks"] == 1 and res["steps"] == 8
    assert res["pretrain_step"] == 12 and not res["random_init"]
    rows = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]
    assert json.loads((tmp_path / "ft" / "summary.json").read_text()) == res
    # the frozen blocks kept the pretrained weights, the last one moved
    ckpt = torch.load(tmp_path / "ft" / "checkpoints" / "last.pt", weights_only=True)
    enc = load_run(quick_run).encoder().state_dict()
    assert torch.equal(ckpt["model"]["blocks.0.attn.qkv.weight"], enc["blocks.0.attn.qkv.weight"])
    assert not torch.equal(ckpt["model"]["blocks.1.attn.qkv.weight"],
                           enc["blocks.1.attn.qkv.weight"])


def test_finetune_random_init_starts_from_the_untrained_encoder(quick_run, tmp_path, capsys):
    code, out, _ = _ft(["--checkpoint", str(quick_run), "--random-init", "--out",
                        str(tmp_path / "rnd"), *FAST], capsys)
    res = json.loads(out)
    assert code == 0 and res["random_init"] and res["pretrain_step"] == 0
    assert 0 <= res["finetune_top1"] <= 1


def test_finetune_resumes_where_it_stopped_and_ends_where_an_unbroken_run_ends(
        quick_run, tmp_path, one_thread):
    args = dict(overrides=["run.num_threads=1", "finetune.epochs=1", "finetune.batch_size=64",
                           "finetune.ckpt_every=3", "finetune.fraction=0.5", "eval.max_val=64"],
                progress=False)
    whole = finetune(quick_run, out=tmp_path / "whole", **args)
    part = finetune(quick_run, out=tmp_path / "split", stop_after=5, **args)
    assert part["steps"] == 5 and not part["complete"] and whole["steps"] == 8
    resumed = finetune(quick_run, out=tmp_path / "split", **args)
    assert resumed["steps"] == whole["steps"]
    a = torch.load(tmp_path / "whole/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split/checkpoints/last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed["finetune_top1"] == pytest.approx(whole["finetune_top1"])
    steps = [json.loads(x)["step"] for x in
             (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # nothing logged twice


@pytest.mark.parametrize("argv, needle", [
    (["--checkpoint", "missing/run"], "missing/run"),
    (["--checkpoint", "RUN", "--fraction", "1.5"], "finetune.fraction=1.5"),
    (["--checkpoint", "RUN", "--blocks", "7"], "finetune.blocks=7"),
    (["--checkpoint", "RUN", "finetune.batch_size=33"], "finetune.batch_size=33"),
    (["--checkpoint", "RUN", "finetune.pool=max"], "finetune.pool"),
    (["--checkpoint", "RUN", "finetune.batch_size=2048"], "only 1024 labelled"),
])
def test_finetune_bad_input_exits_2_with_one_line(quick_run, tmp_path, capsys, argv, needle):
    argv = [str(quick_run) if a == "RUN" else a for a in argv]
    code, _, err = _ft([*argv, "--out", str(tmp_path / "ft")], capsys)
    assert code == 2 and err.startswith("error:") and needle in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ft").exists()


def test_finetune_refuses_a_folder_of_another_recipe(quick_run, tmp_path, capsys):
    out = str(tmp_path / "ft")
    assert _ft(["--checkpoint", str(quick_run), "--out", out, *FAST], capsys)[0] == 0
    code, _, err = _ft(["--checkpoint", str(quick_run), "--out", out, "--fraction", "0.5",
                        *FAST], capsys)
    assert code == 2 and "finetune.fraction" in err


def test_finetune_config_defaults_validate():
    cfg = load_config(QUICK)
    assert cfg.finetune.blocks == -1 and cfg.finetune.fraction == 1.0
    with pytest.raises(ConfigError, match="finetune.layer_decay"):
        load_config(QUICK, ["finetune.layer_decay=0"])
