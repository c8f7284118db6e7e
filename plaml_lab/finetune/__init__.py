"""Fine-tuning a run's encoder with a classification head (the way ViT encoders are judged:
kNN and linear probes rate MAE-style encoders far below what they reach fine-tuned).

    plaml-lab finetune --checkpoint RUN [--fraction F] [--blocks K] [--random-init] [key=value]

recipe.py builds the model, optimiser, mixing and loss from timm's blocks; loop.py trains,
checkpoints and resumes. The recipe's knobs are the `finetune.*` section of the config tree.
torch and timm load only when a sub-command runs (see add_cli)."""

from __future__ import annotations

import json


def finetune(*args, **kw) -> dict:
    """See plaml_lab.finetune.loop.finetune."""
    from plaml_lab.finetune.loop import finetune as _finetune
    return _finetune(*args, **kw)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a run's encoder with a classification head (one JSON object)",
        description="Fine-tune the encoder of a pretrained run (or, with --random-init, the "
        "untrained encoder of the same shape: the baseline) with a linear head on the run's "
        "dataset: layer-wise lr decay, drop path, mixup / cutmix, label smoothing, warm-up + "
        "cosine (finetune.* keys). Writes RUN/finetune/<tag>/ (re-running resumes) and prints "
        "one JSON object with finetune_top1 on the held-out split; progress goes to stderr.")
    p.add_argument("--checkpoint", required=True, help="pretrained run folder or checkpoint file")
    p.add_argument("--fraction", type=float, default=None,
                   help="fraction of the labelled training images, the same per class "
                   "(finetune.fraction; default 1)")
    p.add_argument("--blocks", type=int, default=None,
                   help="fine-tune only the last K blocks (+ final norm + head); -1 = all, "
                   "0 = the head only (finetune.blocks; default -1)")
    p.add_argument("--random-init", action="store_true",
                   help="the same recipe from an untrained encoder of the same shape (baseline)")
    p.add_argument("--encoder", default="student",
                   choices=["student", "labelling", "reconstruction"],
                   help="which encoder of the run to fine-tune (default: the student's)")
    p.add_argument("--out", help="fine-tuning run folder (default RUN/finetune/<tag>)")
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: run.device)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="finetune.*, eval.* and other non-model keys, e.g. finetune.epochs=3")
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args) -> int:
    result = finetune(args.checkpoint, fraction=args.fraction, blocks=args.blocks,
                      random_init=args.random_init, encoder=args.encoder,
                      overrides=args.overrides, out=args.out, device=args.device,
                      progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    return 0
