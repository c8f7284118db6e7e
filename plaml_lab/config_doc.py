"""`plaml-lab config [PRESET] [PREFIX]`: every config key with its type, value, allowed values
and one-line help, read from the dataclasses that validation uses (config.py), so the listing
and what is checked cannot drift apart. No torch: the command answers instantly."""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

from plaml_lab.config import PretrainConfig, load_config
from plaml_lab.errors import ConfigError
from plaml_lab.typed_tree import describe


def _is_prefix(rows: list[dict], prefix: str) -> bool:
    return any(r["key"] == prefix or r["key"].startswith(prefix + ".") for r in rows)


def _sections_and_keys(rows: list[dict]) -> list[str]:
    names = set()
    for r in rows:
        parts = r["key"].split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(names)


def split_args(rows: list[dict], first: str | None,
               second: str | None) -> tuple[str | None, str | None]:
    """(preset, prefix) from the one or two positionals. A lone argument is a prefix when it
    names a key or section, or does not look like a file (no .yaml, no folder); else a preset."""
    if second is not None or first is None:
        return first, second
    looks_like_file = (Path(first).suffix in (".yaml", ".yml") or "/" in first
                       or Path(first).is_file())
    if _is_prefix(rows, first) or not looks_like_file:
        return None, first
    return first, None


def select(rows: list[dict], prefix: str | None) -> list[dict]:
    """The rows under `prefix` (a key or a section); ConfigError naming it when there are none."""
    if not prefix:
        return rows
    if not _is_prefix(rows, prefix):
        close = difflib.get_close_matches(prefix, _sections_and_keys(rows), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown config key or section '{prefix}'{hint} "
                          "(plaml-lab config lists them all)")
    return [r for r in rows if r["key"] == prefix or r["key"].startswith(prefix + ".")]


def _show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()  # as YAML and overrides write it
    return repr(value) if value == "" else str(value)


def format_rows(rows: list[dict], with_default: bool) -> str:
    """Aligned columns, one key a line: KEY VALUE [DEFAULT] TYPE ALLOWED HELP."""
    head = ["key", "value"] + (["default"] if with_default else []) + ["type", "allowed", "help"]
    table = [head] + [[r["key"], _show(r["value"])]
                      + ([_show(r["default"])] if with_default else [])
                      + [r["type"], r["allowed"] or "-", r["help"]] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
                     for row in table)


def cmd_config(args) -> int:
    rows = describe(PretrainConfig(), PretrainConfig())
    preset, prefix = split_args(rows, args.preset, args.prefix)
    if preset is not None:
        rows = describe(load_config(preset), PretrainConfig())
    text = format_rows(select(rows, prefix), with_default=preset is not None)
    try:
        print(text)
    except BrokenPipeError:  # `plaml-lab config | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
