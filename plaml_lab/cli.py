"""`plaml-lab` command line: pretrain, eval, export, sweep, bench.

Exit codes: 0 success; 2 bad input (one line `error: ...` naming the key, path or file);
3 a run stopped on a non-finite loss; 1 anything else (e.g. failed sweep points)."""

from __future__ import annotations

import argparse
import json
import sys

from plaml_lab.checkpoint import CheckpointError
from plaml_lab.config import ConfigError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, FileNotFoundError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from plaml_lab.data.datasets import DatasetError
    from plaml_lab.train import RunError
    return USER_ERRORS + (DatasetError, RunError)


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes in one line and exits 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain one configuration (resumes an existing --out)",
                       description="Pretrain one configuration. Re-running with the same --out "
                       "resumes from --out/checkpoints/last.pt.")
    p.add_argument("--config", help="YAML preset, e.g. experiments/configs/lab.yaml")
    p.add_argument("--out", help="run folder (default experiments/runs/<run.name>)")
    p.add_argument("--force-new", action="store_true",
                   help="move an existing run in --out aside to a dated folder and start anew")
    from plaml_lab.sweep import add_executor_args
    add_executor_args(p, "the run's processes")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted config overrides, e.g. method.teachers=single mask.ratio=0.6; "
                   "cluster.KEY=V for a submitit executor, e.g. cluster.nodes=2 (docs/cluster.md)")
    p.set_defaults(func=cmd_pretrain)


def _submit_pretrain(args) -> int:
    """--executor submitit-local|slurm: one job of cluster.nodes x tasks_per_node processes."""
    from plaml_lab import executors
    overrides, cluster = executors.split_cluster_overrides(args.overrides)
    settings = executors.cluster_settings(None, cluster)
    job, out = executors.submit_pretrain(args.config, args.out, overrides, args.executor,
                                         settings, force_new=args.force_new)
    rec = executors.read_record(out)
    print(f"{args.executor} job {job.job_id}: {out} (record {out / executors.RECORD}, "
          f"log {rec['stdout']})", file=sys.stderr)
    if args.detach:
        return 0
    try:
        summary = executors.result(job)
    except KeyboardInterrupt:
        if args.executor == "submitit-local":
            job.cancel(check=False)
        raise
    except Exception:  # noqa: BLE001 - the job failed: its error in one line, the log to read
        error = executors.job_error(job)
        executors.finish_record(out, "FAILED", error)
        print(f"error: job {job.job_id} failed: {error} (log {rec['stderr']})", file=sys.stderr)
        return 1
    executors.finish_record(out, "DONE")
    print(json.dumps(summary, indent=2))
    return 0


def cmd_pretrain(args) -> int:
    if args.executor != "local":
        return _submit_pretrain(args)
    if args.detach:
        raise ConfigError("--detach: only with --executor submitit-local or slurm")
    from plaml_lab.train import NonFiniteLossError, pretrain
    try:
        summary = pretrain(args.config, args.out, args.overrides, force_new=args.force_new)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(json.dumps(summary, indent=2))
    return 0


def _add_eval(sub) -> None:
    from plaml_lab.evaluate import PROBES
    p = sub.add_parser(
        "eval", help="evaluate frozen features of a run (one JSON object to stdout)",
        description="Probe the frozen encoder of a run on the dataset's fixed held-out split "
        "(docs/evaluation.md). Prints one JSON object; progress bars go to stderr.")
    p.add_argument("--checkpoint", help="checkpoint file or run folder")
    p.add_argument("--config", help="with --random-init and no checkpoint: the model's preset")
    p.add_argument("--probes", default=",".join(PROBES),
                   help=f"comma-separated, any of {','.join(PROBES)} (default: all). knn and "
                   "linear are cheap; seg and box need a dataset with masks (shapes)")
    p.add_argument("--encoder", default="student",
                   choices=["student", "labelling", "reconstruction"],
                   help="which encoder's features to probe (clusters always uses the "
                   "labelling teacher's pseudo labels)")
    p.add_argument("--random-init", action="store_true",
                   help="evaluate an untrained encoder of the same shape (the baseline)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="non-model settings of the loaded config, e.g. eval.max_train=2000")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from plaml_lab.evaluate import evaluate
    from plaml_lab.train import resolve_device
    probes = [p.strip() for p in args.probes.split(",") if p.strip()]
    if not args.checkpoint and not (args.random_init and args.config):
        raise ConfigError("--checkpoint: required (or --random-init with --config)")
    result = evaluate(args.checkpoint, probes=probes, encoder=args.encoder,
                      random_init=args.random_init, config=args.config, overrides=args.overrides,
                      device=resolve_device(args.device), progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plaml-lab", description="Pseudo-labelling MAE research workbench.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_pretrain(sub)
    _add_eval(sub)
    for extra in ("export", "sweep", "bench"):
        try:
            mod = __import__(f"plaml_lab.{extra}", fromlist=["add_cli"])
        except ImportError:
            continue
        if hasattr(mod, "add_cli"):
            mod.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename:
            msg = f"file not found: {e.filename}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
