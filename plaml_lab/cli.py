"""`plaml-lab` command line: pretrain, eval, export, finetune, sweep, search, bench, ablation,
demo, config.

Every sub-command's arguments are defined here with argparse alone, and each names the function
that runs it as "module:function"; the module is imported only when its sub-command runs, so
`plaml-lab --help` imports no torch. A sub-command whose module fails to import is an error
with a traceback, never a missing choice.

Exit codes: 0 success; 2 bad input (one line `error: ...` naming the key, path or file);
3 a run stopped on a non-finite loss; 1 anything else (e.g. failed sweep points)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings

from plaml_lab.config import PROBES, ConfigError
from plaml_lab.errors import USER_ERRORS, NonFiniteLossError
from plaml_lab.lab.paired import CONFIDENCE
from plaml_lab.method.rules import VARIANTS

ENCODERS = ["student", "labelling", "reconstruction"]
EXECUTORS = ("local", "submitit-local", "slurm")  # plaml_lab.lab.cluster.EXECUTORS (a test)
OVERRIDES_HELP = "dotted config overrides, e.g. method.teachers=single mask.ratio=0.6"


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _at_least(low: float, kind=int):
    """argparse type: a number >= low (a batch of 0 or a negative timeout is never meant)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                             f", got {text!r}") from None
        if not value >= low:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        return value
    return parse


def _names(text: str) -> str:
    """argparse type: a comma-separated list naming at least one thing (`--probes ,` would
    silently mean none, or all)."""
    if not [t for t in text.split(",") if t.strip()]:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give comma-separated names")
    return text


def _overrides(p, help_text: str = OVERRIDES_HELP) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help=help_text)


def _executor(p, what: str) -> None:
    """--executor and --detach (pretrain, sweep, ablation); docs/cluster.md."""
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help=f"where {what}: local (processes started from here, the default), "
                   "submitit-local (submitit jobs on this machine), slurm (submitit jobs on a "
                   "SLURM cluster); cluster.KEY=VALUE overrides set the resources "
                   "(docs/cluster.md)")
    p.add_argument("--detach", action="store_true",
                   help="with a submitit executor: submit, record the jobs and return; the "
                   "same command again waits for them and collects the results")


def _pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain one configuration (resumes an existing --out)",
                       description="Pretrain one configuration. Re-running with the same --out "
                       "resumes from --out/checkpoints/last.pt.")
    p.add_argument("--config", help="YAML preset: a path, or a preset name (demo, lab, quick)")
    p.add_argument("--out", help="run folder (default experiments/runs/<run.name>)")
    p.add_argument("--force-new", action="store_true",
                   help="move an existing run in --out aside to a dated folder and start anew")
    _executor(p, "the run's processes run (cluster.nodes x cluster.tasks_per_node under "
              "submitit: DDP)")
    _overrides(p, OVERRIDES_HELP + "; cluster.KEY=VALUE for a submitit executor")
    p.set_defaults(run="plaml_lab.cli:cmd_pretrain")


def _eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate frozen features of a run (one JSON object to stdout)",
        description="Probe the frozen encoder of a run on one of the dataset's fixed held-out "
        "splits, val (for choosing settings) or test (for reporting; docs/evaluation.md). Prints "
        "one JSON object (its `split` names the split); progress bars go to stderr.")
    p.add_argument("--checkpoint", help="checkpoint file or run folder")
    p.add_argument("--config", help="with --random-init and no checkpoint: the model's preset")
    p.add_argument("--probes", default=",".join(PROBES), type=_names,
                   help=f"comma-separated, any of {','.join(PROBES)} (default: all). knn and "
                   "linear are cheap; seg and box need a dataset with masks (shapes)")
    p.add_argument("--encoder", default="student", choices=ENCODERS,
                   help="which encoder's features to probe (clusters always uses the "
                   "labelling teacher's pseudo labels)")
    p.add_argument("--random-init", action="store_true",
                   help="evaluate an untrained encoder of the same shape (the baseline)")
    p.add_argument("--split", default="val", choices=["val", "test"],
                   help="held-out split the probes score: val for choosing settings (default), "
                   "test for reporting a table once")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    _overrides(p, "non-model settings of the loaded config, e.g. eval.max_train=2000")
    p.set_defaults(run="plaml_lab.cli:cmd_eval")


def _export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a run's encoder as a timm-loadable .safetensors file or folder",
        description="Write the encoder of a run as safetensors that loads with strict=True into "
        "timm.models.vision_transformer.VisionTransformer of the same shape (num_classes=0). "
        "See docs/evaluation.md for loading it in timm.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument("--out", required=True, help="output file, e.g. encoder.safetensors (a "
                   "folder with --format timm-dir)")
    p.add_argument("--encoder", default="student", choices=ENCODERS,
                   help="which encoder to export (default: the student's)")
    p.add_argument("--format", default="safetensors", choices=["safetensors", "timm-dir"],
                   help="safetensors: one file (the default); timm-dir: a folder with "
                   "config.json + model.safetensors that timm.create_model('local-dir:OUT', "
                   "pretrained=True, num_classes=0) loads by name")
    p.set_defaults(run="plaml_lab.export:cmd_export")


def _finetune(sub) -> None:
    p = sub.add_parser(
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
    p.add_argument("--encoder", default="student", choices=ENCODERS,
                   help="which encoder of the run to fine-tune (default: the student's)")
    p.add_argument("--out", help="fine-tuning run folder (default RUN/finetune/<tag>)")
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: run.device)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _overrides(p, "finetune.*, eval.* and other non-model keys, e.g. finetune.epochs=3")
    p.set_defaults(run="plaml_lab.finetune:cmd_finetune")


def _sweep(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a notebook over a grid of overrides (papermill); results.csv",
        description="Run one papermill execution of a notebook per grid point into "
        "OUT/<point>/, collect OUT/results.csv. Failed points are reported and do not stop the "
        "others (exit 1 when any failed); completed points are skipped on a re-run.")
    p.add_argument("grid", help="grid YAML, e.g. experiments/grids/quick_variants.yaml")
    p.add_argument("--notebook", help="notebook to run per point (default: the grid's, else "
                   "notebooks/01_pretrain.ipynb)")
    p.add_argument("--out", help="output folder (default experiments/runs/sweeps/<grid name>)")
    p.add_argument("--workers", type=int, default=1,
                   help="points run in parallel (each gets cores/N torch threads)")
    p.add_argument("--timeout", type=_at_least(1, float), default=None,
                   help="seconds per point before it is stopped and recorded as failed")
    p.add_argument("--config", help="preset for every point instead of the grid's `config`")
    p.add_argument("--dry-run", action="store_true", help="list the points and exit")
    _executor(p, "points run (one job per point, a job array on SLURM)")
    p.add_argument("--status", action="store_true",
                   help="show each point's state, job id, requeues and log path, and exit")
    _overrides(p, "overrides added to every point (after the grid's own); cluster.KEY=VALUE "
               "sets the grid's cluster section")
    p.set_defaults(run="plaml_lab.lab.sweep:cmd_sweep")


def _search(sub) -> None:
    p = sub.add_parser(
        "search", help="search config keys over ranges (Optuna, median pruning); resumable",
        description="Run an Optuna study over the ranges and choices of a search file "
        "(docs/search.md): each trial is one pretraining run in OUT/trials/, pruned early on the "
        "kNN it logs (run.knn_every) when it falls below the median of earlier trials. The study "
        "is OUT/study.db: the same command resumes a killed search without repeating finished "
        "trials. Writes OUT/trials.csv and OUT/best_grid.yaml (the best trials with the "
        "search's seeds, for `plaml-lab sweep`).")
    p.add_argument("search", help="search YAML, e.g. experiments/searches/quick_blr_mask.yaml")
    p.add_argument("--out", help="study folder (default experiments/runs/searches/<search name>)")
    p.add_argument("--trials", type=int, default=None,
                   help="finished trials to reach (default: the file's `trials`)")
    p.add_argument("--workers", type=int, default=1,
                   help="trials run in parallel (each gets cores/N torch threads)")
    p.set_defaults(run="plaml_lab.lab.search:cmd_search")


def bench_arguments(p: argparse.ArgumentParser) -> None:
    """`plaml-lab bench`'s arguments (benchmarks/bench.py adds its own to the same set)."""
    p.add_argument("--preset", default="experiments/configs/lab.yaml",
                   help="YAML preset or preset name (default experiments/configs/lab.yaml; "
                   "'none': the config defaults)")
    p.add_argument("--variants", action="append", metavar="A,B",
                   help=f"comma-separated variants (default all: {','.join(VARIANTS)})")
    p.add_argument("--precisions", action="append", metavar="A,B",
                   help="comma-separated precisions auto|fp32|bf16|fp16 (default the preset's; "
                   "auto = what a run on this machine uses)")
    p.add_argument("--steps", type=_at_least(1), default=20,
                   help="timed steps per case (default 20)")
    p.add_argument("--warmup", type=_at_least(0), default=3,
                   help="untimed steps per case (default 3)")
    p.add_argument("--batch", type=_at_least(1), default=None,
                   help="images per step (optim.batch_size)")
    p.add_argument("--augment", action="store_true",
                   help="include the batched augmentation (make_views) in every step")
    p.add_argument("--matmul-n", type=_at_least(1), default=None,
                   help="size of the matmul that measures the peak (default 1024 CPU, 8192 CUDA)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory phase")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    _overrides(p, "dotted config overrides for every case, e.g. run.device=cuda")


def _bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark step time, images/s, memory and MFU of the variants",
        description="Benchmark the method's variants (round-robin, medians); see "
                    "benchmarks/README.md.")
    bench_arguments(p)
    p.set_defaults(run="plaml_lab.lab.bench:cmd_bench")


def _ablation(sub) -> None:
    p = sub.add_parser(
        "ablation", help="the miniature paper table: pretrain + probe every grid point and seed",
        description="Pretrain and probe every point of an ablation grid for every seed, then "
        "write the table (markdown, CSV, plot) to --out. Re-running reuses finished runs.")
    p.add_argument("--grid", default="experiments/grids/paper_ablation.yaml",
                   help="grid file (default experiments/grids/paper_ablation.yaml)")
    p.add_argument("--preset", help="config preset (default: the grid's config, else "
                   "experiments/configs/lab.yaml)")
    p.add_argument("--seeds", type=_names, help="comma-separated seeds (default: the grid's)")
    p.add_argument("--variants", type=_names, help="comma-separated subset of the grid's points")
    p.add_argument("--probes", type=_names,
                   help=f"comma-separated probes, any of {','.join(PROBES)},finetune "
                   "(default: all)")
    p.add_argument("--runs", default="experiments/runs/ablation",
                   help="run folders (default experiments/runs/ablation)")
    p.add_argument("--out", default="experiments/results",
                   help="results folder (default experiments/results)")
    p.add_argument("--device", default="cpu", help="device for the probes' feature extraction")
    p.add_argument("--split", choices=["val", "test"],
                   help="held-out split the table scores (default: the grid's `split`, else "
                   "val); report a table on test once its settings were chosen on val")
    p.add_argument("--confidence", type=float, default=CONFIDENCE,
                   help="level of the paired Student-t intervals that give the verdicts "
                   f"(default {CONFIDENCE}; a second look at a question: a Bonferroni level, e.g. 0.975)")
    p.add_argument("--workers", type=int, default=1,
                   help="pretrain this many grid points at once (processes; default 1)")
    _executor(p, "the grid points are pretrained (one job per point and seed)")
    _overrides(p, "applied to every run after the grid's own, e.g. run.max_steps=20; "
               "cluster.KEY=VALUE sets the grid's cluster section")
    p.set_defaults(run="plaml_lab.lab.ablation:cmd_ablation")


def _demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="pretrain the paper's variant, compare it with a random init, save figures",
        description="Pretrain the dual-teacher pseudo-labelling MAE (demo preset: the lab "
        "preset's data and model on a budget of minutes), evaluate it against a random-init "
        "encoder on the held-out split, and save figures next to the run. Re-running resumes.")
    p.add_argument("--config", default="demo",
                   help="YAML preset or preset name (default demo: experiments/configs/demo.yaml)")
    p.add_argument("--out", default="experiments/runs/demo",
                   help="run folder (default experiments/runs/demo)")
    _overrides(p)
    p.set_defaults(run="plaml_lab.notebook.demo:cmd_demo")


def _config(sub) -> None:
    p = sub.add_parser(
        "config", help="list config keys: type, value, allowed values, one-line help",
        description="List the config keys (every one, or those under PREFIX, e.g. pl or "
        "teachers.labelling) with type, default, allowed values and help; with PRESET (a YAML "
        "file) the preset's values, and the defaults beside them. The same dataclasses "
        "validate every run.")
    p.add_argument("preset", nargs="?", metavar="PRESET",
                   help="YAML preset, e.g. experiments/configs/lab.yaml (optional)")
    p.add_argument("prefix", nargs="?", metavar="PREFIX",
                   help="a section or key, e.g. pl, teachers.labelling, mask.ratio")
    p.set_defaults(run="plaml_lab.config_doc:cmd_config")


SUBCOMMANDS = (_pretrain, _eval, _export, _finetune, _sweep, _search, _bench, _ablation,
               _demo, _config)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plaml-lab", description="Pseudo-labelling MAE research workbench.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def handler(target: str):
    """"module:function" -> the function (an ImportError here is a real error: it propagates)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


# --- the two sub-commands that are plain calls into the library --------------------------------

def cmd_pretrain(args) -> int:
    if args.executor != "local":
        return handler("plaml_lab.lab.submit:cmd_pretrain_job")(args)
    handler("plaml_lab.lab.cluster:check_kind")(args.executor, args.detach)
    cluster = [o for o in args.overrides if o.startswith("cluster.")]
    if cluster:
        raise ConfigError(f"{cluster[0]}: cluster settings are for --executor submitit-local "
                          "or slurm")
    pretrain = handler("plaml_lab.train:pretrain")
    summary = pretrain(args.config, args.out, args.overrides, force_new=args.force_new)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_eval(args) -> int:
    evaluate = handler("plaml_lab.evaluate:evaluate")
    resolve_device = handler("plaml_lab.hardware:resolve_device")
    probes = [p.strip() for p in args.probes.split(",") if p.strip()]
    if not args.checkpoint and not (args.random_init and args.config):
        raise ConfigError("--checkpoint: required (or --random-init with --config)")
    result = evaluate(args.checkpoint, probes=probes, encoder=args.encoder,
                      random_init=args.random_init, config=args.config, overrides=args.overrides,
                      device=resolve_device(args.device), progress=not args.no_progress,
                      split=args.split)
    print(json.dumps(result, indent=2))
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"  # as errors: one line, no source location


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value after an option (`sweep GRID --out DIR run.device=cpu`): argparse has already
    # closed the positional list by then; they are overrides all the same
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-")
                                                    for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv[1:]  # the sub-command's own arguments (the ablation table records them)
    try:
        return int(handler(args.run)(args) or 0)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except USER_ERRORS as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename:
            msg = f"file not found: {e.filename}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only folder, a full disk: the path and the reason, one line
        if not e.filename:
            raise
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
