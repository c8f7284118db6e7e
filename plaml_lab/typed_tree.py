"""A tree of dataclasses <-> YAML, nested dicts and dotted `key=value` overrides, with one-line
ConfigErrors naming the key. Generic: config.py holds the tree itself (PretrainConfig), its
limits and the method's rules, and calls these with it."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import math
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import yaml

from plaml_lab.errors import ConfigError


def knob(default, lo=None, hi=None, *, open_lo: bool = False, open_hi: bool = False,
         help: str = ""):
    """A numeric field with its range: [lo, hi], open at an end with open_lo / open_hi; lo/hi
    None = unbounded, or the name of a sibling field. `help`: the key's one-line description
    (`plaml-lab config` prints it)."""
    return field(default=default, metadata={"range": (lo, hi, open_lo, open_hi), "help": help})


def opt(default, help: str):
    """A field without a range (a choice, a flag, a name) and its one-line help."""
    return field(default=default, metadata={"help": help})


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Every knob(...) field of `obj` and its sub-sections against its range."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
            continue
        if "range" not in f.metadata:
            continue
        lo, hi, open_lo, open_hi = f.metadata["range"]
        lo = getattr(obj, lo) if isinstance(lo, str) else lo
        hi = getattr(obj, hi) if isinstance(hi, str) else hi
        if (lo is not None and (value <= lo if open_lo else value < lo)) or (
                hi is not None and (value >= hi if open_hi else value > hi)):
            interval = (f"{'(' if open_lo else '['}{'-inf' if lo is None else lo}, "
                        f"{'inf' if hi is None else hi}{')' if open_hi else ']'}")
            raise ConfigError(f"{prefix}{f.name}={value!r}: must be in {interval}")


def to_dict(cfg: Any) -> dict:
    """The tree as nested plain dicts (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


_EXPECTED = {bool: "a boolean (true|false)", int: "an integer", float: "a number", str: "a string"}
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _convert(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML/override value to the field's type, or raise ConfigError naming the key."""
    if typing.get_origin(tp) is Literal:
        allowed = typing.get_args(tp)
        with contextlib.suppress(ConfigError):  # "3" -> 3 for Literal[1, 2]; reported below
            value = _convert(key, value, type(allowed[0]))
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: allowed values are {'|'.join(map(str, allowed))}")
        return value
    bad_number = False
    try:
        if tp is bool:
            return value if isinstance(value, bool) else _BOOLS[str(value).lower()]
        if not isinstance(value, bool):  # True is no number and no name
            if tp is int and float(value).is_integer():
                return int(float(value))
            if tp is float:
                number = float(value)
                if math.isfinite(number):
                    return number
                # a NaN passes every range check (each comparison is False), an inf only
                # fails at the first step: neither is a setting
                bad_number = True
            if tp is str and isinstance(value, (str, int, float)):
                return str(value)
    except (KeyError, TypeError, ValueError):
        pass
    if tp is float and bad_number:
        raise ConfigError(f"{key}={value!r}: expected a finite number")
    raise ConfigError(f"{key}={value!r}: expected {_EXPECTED.get(tp, tp)}")


def _known_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in _field_types(cls).items():
        if _is_dataclass_type(tp):
            keys += _known_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _allowed(f: dataclasses.Field, tp: Any, prefix: str) -> str:
    """What a field accepts, as the validation checks it: choices, or a range whose bound may
    name a sibling key."""
    if typing.get_origin(tp) is Literal:
        return "|".join(map(str, typing.get_args(tp)))
    if tp is bool:
        return "true|false"
    if "range" not in f.metadata:
        return ""
    lo, hi, open_lo, open_hi = f.metadata["range"]
    lo = prefix + lo if isinstance(lo, str) else ("-inf" if lo is None else lo)
    hi = prefix + hi if isinstance(hi, str) else ("inf" if hi is None else hi)
    return f"{'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        tp = type(typing.get_args(tp)[0])
    return getattr(tp, "__name__", str(tp))


def describe(obj: Any, default: Any, prefix: str = "") -> list[dict]:
    """One row per leaf key of a config tree: key, type, value (in `obj`), default (in
    `default`, the same tree at its defaults), allowed values and help, in field order."""
    rows = []
    hints = _field_types(type(obj))
    for f in dataclasses.fields(obj):
        value, tp = getattr(obj, f.name), hints[f.name]
        if _is_dataclass_type(tp):
            rows += describe(value, getattr(default, f.name), f"{prefix}{f.name}.")
            continue
        rows.append(dict(key=prefix + f.name, type=_type_name(tp), value=value,
                         default=getattr(default, f.name), allowed=_allowed(f, tp, prefix),
                         help=f.metadata.get("help", "")))
    return rows


def unknown_key_error(root: type, key: str) -> ConfigError:

    close = difflib.get_close_matches(key, _known_keys(root), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def build(cls: type, data: dict | None, prefix: str = "", base: Any = None, root: type | None = None) -> Any:
    """Set `data` onto `base` (default: cls()); nested sections start from the parent's default
    for that field, so e.g. the reconstruction teacher keeps its own default momenta."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = _field_types(cls)
    obj = cls() if base is None else base
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in hints:
            raise unknown_key_error(root or cls, full)
        tp = hints[key]
        if _is_dataclass_type(tp):
            setattr(obj, key, build(tp, value, full + ".", getattr(obj, key), root or cls))
        else:
            setattr(obj, key, _convert(full, value, tp))
    return obj


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file's top-level mapping ({} when empty); one-line ConfigError naming the file
    when it is missing, is not valid YAML (with the line), or is not a mapping. Also reads the
    sweep and ablation grid files (`what` names the kind of file in the message)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a {what} is YAML text)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', value parsed as a YAML scalar)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value (e.g. mask.ratio=0.6)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(root: type, data: dict, overrides: list[str] | tuple[str, ...] | None) -> dict:
    """Set dotted keys in a nested dict (a copy); unknown keys raise ConfigError."""

    data = copy.deepcopy(data) if data else {}
    for text in overrides or []:
        key, value = parse_override(text)
        parts = key.split(".")
        cls: Any = root
        node = data
        for i, part in enumerate(parts):
            hints = _field_types(cls)
            if part not in hints:
                raise unknown_key_error(root, key)
            tp = hints[part]
            last = i == len(parts) - 1
            if _is_dataclass_type(tp):
                if last:
                    raise ConfigError(f"override '{text}': '{key}' is a section; set one of its keys")
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
                cls = tp
            else:
                if not last:
                    raise unknown_key_error(root, key)
                node[part] = value
    return data


def save_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs."""
    da = a if isinstance(a, dict) else to_dict(a)
    db = b if isinstance(b, dict) else to_dict(b)
    out = []
    for k in sorted(set(da) | set(db)):
        va, vb = da.get(k), db.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out
