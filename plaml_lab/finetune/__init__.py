"""Fine-tuning a run's encoder with a classification head (the way ViT encoders are judged:
kNN and linear probes rate MAE-style encoders far below what they reach fine-tuned).

    plaml-lab finetune --checkpoint RUN [--fraction F] [--blocks K] [--random-init] [key=value]

recipe.py builds the model, optimiser, mixing and loss from timm's blocks; loop.py trains,
checkpoints and resumes. The recipe's knobs are the `finetune.*` section of the config tree."""

from __future__ import annotations

import json

from plaml_lab.finetune.loop import finetune

__all__ = ["cmd_finetune", "finetune"]


def cmd_finetune(args) -> int:
    result = finetune(args.checkpoint, fraction=args.fraction, blocks=args.blocks,
                      random_init=args.random_init, encoder=args.encoder,
                      overrides=args.overrides, out=args.out, device=args.device,
                      progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    return 0
