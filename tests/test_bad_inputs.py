"""Bad input anywhere a user types: exit code 2, one line `error: ...` naming the thing, and no
partial or overwritten run left behind. Table-driven through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from plaml_lab import cli

QUICK_FAST = ["run.max_steps=2", "run.eval_knn=false"]


def _image_tree(root: Path, classes=("a", "b", "c"), per_class=12, sizes=(16, 24, 40)) -> Path:
    g = torch.Generator().manual_seed(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            s = sizes[i % len(sizes)]  # mixed sizes on purpose
            arr = (torch.rand(s, s + 3, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def _setup(kind: str, tmp: Path, quick: str) -> list[str]:
    """Build the situation and return the CLI argv; `OUT` is tmp/out."""
    out = str(tmp / "out")
    pre = ["pretrain", "--config", quick, "--out", out]
    if kind == "unknown_key":
        return pre + ["mask.ratoi=0.5"]
    if kind == "wrong_type":
        return pre + ["mask.ratio=lots"]
    if kind == "ratio_range":
        return pre + ["mask.ratio=1.5"]
    if kind == "momentum_range":
        return pre + ["teachers.labelling.momentum=2"]
    if kind == "bad_choice":
        return pre + ["method.target=voxels"]
    if kind == "no_equals":
        return pre + ["mask"]
    if kind == "img_vs_patch":
        return pre + ["model.img_size=18"]
    if kind == "heads_vs_width":
        return pre + ["model.num_heads=3"]
    if kind == "yaml_syntax":
        p = tmp / "bad.yaml"
        p.write_text("model:\n  depth: [2\n")
        return ["pretrain", "--config", str(p), "--out", out]
    if kind == "yaml_not_mapping":
        p = tmp / "list.yaml"
        p.write_text("- 1\n- 2\n")
        return ["pretrain", "--config", str(p), "--out", out]
    if kind == "config_missing":
        return ["pretrain", "--config", str(tmp / "missing.yaml"), "--out", out]
    if kind == "root_missing":
        return pre + QUICK_FAST + ["data.dataset=folder", f"data.root={tmp / 'nowhere'}"]
    if kind == "root_empty":
        (tmp / "empty").mkdir()
        return pre + QUICK_FAST + ["data.dataset=folder", f"data.root={tmp / 'empty'}"]
    if kind == "root_no_images":
        (tmp / "txt" / "a").mkdir(parents=True)
        (tmp / "txt" / "a" / "notes.txt").write_text("x")
        return pre + QUICK_FAST + ["data.dataset=folder", f"data.root={tmp / 'txt'}"]
    if kind == "corrupt_image_error_mode":
        root = _image_tree(tmp / "imgs")
        for i in range(12):  # every image of class b is corrupt, so the first batch meets one
            (root / "b" / f"{i}.png").write_bytes(b"not a png")
        return pre + QUICK_FAST + ["data.dataset=folder", f"data.root={root}",
                                   "data.on_bad_image=error", "optim.batch_size=8"]
    if kind == "batch_larger_than_data":
        root = _image_tree(tmp / "small", per_class=2)
        return pre + QUICK_FAST + ["data.dataset=folder", f"data.root={root}"]
    if kind == "cifar_missing":
        return pre + QUICK_FAST + ["data.dataset=cifar10", f"data.root={tmp / 'cifar'}",
                                   "model.img_size=32"]
    if kind == "out_is_a_file":
        (tmp / "out").write_text("precious")
        return pre + QUICK_FAST
    if kind == "eval_ckpt_missing":
        return ["eval", "--checkpoint", str(tmp / "none.pt")]
    if kind == "eval_ckpt_corrupt":
        p = tmp / "corrupt.pt"
        p.write_bytes(b"\x00" * 100)
        return ["eval", "--checkpoint", str(p)]
    if kind == "eval_not_plaml":
        p = tmp / "foreign.pt"
        torch.save({"weights": torch.zeros(2)}, p)
        return ["eval", "--checkpoint", str(p)]
    if kind == "eval_wrong_shape":
        from plaml_lab.train import pretrain
        pretrain(quick, tmp / "run", QUICK_FAST)
        return ["eval", "--checkpoint", str(tmp / "run"), "model.embed_dim=64"]
    if kind == "eval_unknown_probe":
        from plaml_lab.train import pretrain
        pretrain(quick, tmp / "run", QUICK_FAST)
        return ["eval", "--checkpoint", str(tmp / "run"), "--probes", "knn,telepathy"]
    if kind == "resume_other_config":
        from plaml_lab.train import pretrain
        pretrain(quick, tmp / "out", QUICK_FAST)
        return pre + QUICK_FAST + ["mask.ratio=0.5"]
    if kind == "unknown_option":
        return pre + ["--bogus"]
    raise AssertionError(kind)


CASES = {  # kind -> text the one-line error must contain
    "unknown_key": "mask.ratoi",
    "wrong_type": "mask.ratio",
    "ratio_range": "mask.ratio",
    "momentum_range": "teachers.labelling.momentum",
    "bad_choice": "method.target",
    "no_equals": "mask",
    "img_vs_patch": "model.img_size",
    "heads_vs_width": "model.num_heads",
    "yaml_syntax": "bad.yaml",
    "yaml_not_mapping": "list.yaml",
    "config_missing": "missing.yaml",
    "root_missing": "nowhere",
    "root_empty": "empty",
    "root_no_images": "txt",
    "corrupt_image_error_mode": ".png",
    "batch_larger_than_data": "optim.batch_size",
    "cifar_missing": "cifar",
    "out_is_a_file": "out",
    "eval_ckpt_missing": "none.pt",
    "eval_ckpt_corrupt": "corrupt.pt",
    "eval_not_plaml": "foreign.pt",
    "eval_wrong_shape": "last.pt",
    "eval_unknown_probe": "telepathy",
    "resume_other_config": "mask.ratio",
    "unknown_option": "--bogus",
}


def _snapshot(tmp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_exits_2_with_one_line_error_and_leaves_no_partial_run(
        kind, tmp_path, quick_yaml, capsys):
    argv = _setup(kind, tmp_path, quick_yaml)
    capsys.readouterr()
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) if kind == "unknown_option" else _nullctx() as exc:
        code = cli.main(argv)
    if kind == "unknown_option":
        code = exc.value.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith(("Warning", "  warnings.warn"))
             and "UserWarning" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert CASES[kind] in lines[0], lines[0]
    # nothing that existed changed, and no run folder was left behind
    assert _snapshot(tmp_path) == before
    if kind not in ("resume_other_config", "out_is_a_file"):
        assert not (tmp_path / "out").exists()


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_corrupt_image_mid_epoch_is_skipped_with_warning_and_counted(tmp_path, quick_yaml):
    root = _image_tree(tmp_path / "imgs")
    (root / "b" / "3.png").write_bytes(b"truncated")
    from plaml_lab.train import pretrain
    with pytest.warns(UserWarning, match=r"3\.png"):
        summary = pretrain(quick_yaml, tmp_path / "out",
                           ["data.dataset=folder", f"data.root={root}", "optim.batch_size=8",
                            "optim.epochs=2", "run.eval_knn=false"])
    assert summary["complete"] and summary["bad_images"] >= 1
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["bad_images"] == summary["bad_images"]


def test_folder_of_mixed_image_sizes_trains(tmp_path, quick_yaml):
    from plaml_lab.train import pretrain
    root = _image_tree(tmp_path / "mixed", sizes=(9, 16, 57))
    s = pretrain(quick_yaml, tmp_path / "out", ["data.dataset=folder", f"data.root={root}",
                                                "optim.batch_size=8", "run.max_steps=3",
                                                "run.eval_knn=true"])
    assert s["steps"] == 3 and "knn_top1" in s
