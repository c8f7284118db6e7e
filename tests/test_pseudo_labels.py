"""One definition of a pseudo label: `plaml-lab eval`'s clusters probe, the cluster explorer
and training's targets agree on the same run."""

from __future__ import annotations

import pytest
import torch

from plaml_lab import cli
from plaml_lab.data import normalize, probe_indices
from plaml_lab.evaluate import eval_splits
from plaml_lab.probes import nmi_ari
from plaml_lab.runs import load_run
from plaml_lab.viz import cluster_explorer
from plaml_lab.viz import inspect as I

N = 96  # held-out images compared


@pytest.mark.parametrize("assignment", ["centering", "sinkhorn"])
def test_eval_clusters_and_cluster_explorer_give_the_same_labels_and_nmi(quick_run, assignment,
                                                                         capsys):
    overrides = [f"pl.assignment={assignment}", f"eval.max_val={N}"]
    assert cli.main(["eval", "--checkpoint", str(quick_run), "--probes", "clusters",
                     "--no-progress", *overrides]) == 0
    evaluated = __import__("json").loads(capsys.readouterr().out)

    run = load_run(quick_run, overrides)
    app = cluster_explorer(run, "val", max_images=N)
    _, val = eval_splits(run.cfg)
    batch = I.fetch(val, probe_indices(val, N))  # the clusters probe's stratified sample
    labels = I.pseudo_labels(run, batch["image"])["cls"]
    assert torch.equal(torch.as_tensor(app.image_labels), labels)
    assert app.scores["nmi"] == pytest.approx(evaluated["nmi"], abs=1e-12)
    assert app.scores["ari"] == pytest.approx(evaluated["ari"], abs=1e-12)
    assert evaluated["nmi"] == pytest.approx(nmi_ari(labels, batch["label"])["nmi"], abs=1e-12)
    assert evaluated["prototypes_used"] == len(set(labels.tolist()))


def test_pseudo_labels_are_the_argmax_of_the_targets_training_forms(quick_run):
    """Training's class-token targets (centred teacher scores, the center as the run left it)
    have their argmax exactly where PLAML.pseudo_labels puts the label; the raw scores' argmax,
    the old eval definition, differs on a trained run."""
    run = load_run(quick_run)
    _, val = eval_splits(run.cfg)
    images = normalize(I.fetch(val, torch.arange(N))["image"])
    with torch.no_grad():
        out = run.model([images], run.cfg.pl.teacher_temp, return_details=True,
                        generator=torch.Generator().manual_seed(0))
    scores = out["teacher_cls_scores"]
    assert torch.equal(out["teacher_cls"].argmax(-1), run.model.pseudo_labels(scores, "cls"))
    assert run.model.center_cls.abs().sum() > 0  # the center moved in training ...
    assert not torch.equal(scores.argmax(-1), run.model.pseudo_labels(scores, "cls"))  # ... and matters
