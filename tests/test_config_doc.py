"""`plaml-lab config [PRESET] [PREFIX]`: the listing of keys comes from the dataclasses the
validation uses, so what it says a key accepts is what a run accepts."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import pytest
import yaml

from plaml_lab.cli import main
from plaml_lab.config import ConfigError, ConfigWarning, PretrainConfig, load_config, to_dict
from plaml_lab.config_doc import select
from plaml_lab.typed_tree import describe
from plaml_lab.viz.runset import flatten as flat  # dotted keys, independent of describe()


def listing(argv, capsys) -> dict[str, str]:
    assert main(["config", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["key", "value"]
    return {ln.split()[0]: ln for ln in lines[1:]}


def test_every_key_of_the_tree_has_a_row_with_one_line_help():
    rows = describe(PretrainConfig(), PretrainConfig())
    assert [r["key"] for r in rows] == list(flat(to_dict(PretrainConfig())))
    bad = [r["key"] for r in rows if not r["help"].strip() or "\n" in r["help"]]
    assert bad == [], f"keys without a one-line help: {bad}"


def test_a_preset_and_a_prefix_print_every_key_under_it_with_the_presets_value_and_help(
        root, capsys):
    lab = root / "experiments" / "configs" / "lab.yaml"
    shown = listing([str(lab), "pl"], capsys)
    expected = {k: v for k, v in flat(to_dict(PretrainConfig())).items() if k.startswith("pl.")}
    assert sorted(shown) == sorted(expected)  # every pl.* key, nothing else
    preset = flat(yaml.safe_load(lab.read_text()))
    assert any(k.startswith("pl.") for k in preset)
    helps = {r["key"]: r["help"] for r in describe(PretrainConfig(), PretrainConfig())}
    for key, line in shown.items():
        value = preset.get(key, expected[key])  # the preset's value, else the default
        cols = line.split()
        text = str(value).lower() if isinstance(value, bool) else str(value)
        assert cols[1] == text, (key, line)
        assert cols[2] == (str(expected[key]).lower() if isinstance(expected[key], bool)
                           else str(expected[key])), (key, line)  # the default beside it
        assert line.endswith(helps[key]), line


def test_a_lone_section_name_is_a_prefix_and_lists_the_defaults(capsys):
    shown = listing(["teachers.reconstruction"], capsys)
    assert sorted(shown) == sorted(k for k in flat(to_dict(PretrainConfig()))
                                   if k.startswith("teachers.reconstruction."))
    # the reconstruction teacher's own default momentum, not TeacherConfig's
    assert shown["teachers.reconstruction.momentum"].split()[1] == "0.999"


def interval(text: str):
    m = re.fullmatch(r"([\[(])(-?[\d.e-]+|-inf), (-?[\d.e-]+|inf)([\])])", text)
    return None if m is None else (m[1], m[2], m[3], m[4])


def test_the_allowed_column_is_what_validation_accepts():
    """Each numeric lower bound the listing prints: the bound itself passes or fails exactly as
    the bracket says, and a value below it is refused naming the key; each choice listed
    builds, and a value not listed is refused."""
    checked = 0
    warnings.simplefilter("ignore", ConfigWarning)  # keys the default variant does not read
    for r in describe(PretrainConfig(), PretrainConfig()):
        key, allowed = r["key"], r["allowed"]
        if "|" in allowed:
            for choice in allowed.split("|"):
                try:
                    load_config(None, [f"{key}={choice}"])
                except ConfigError as e:  # a rule tying fields together may refuse a choice
                    assert not str(e).startswith(f"{key}={choice!r}: allowed"), e
            with pytest.raises(ConfigError, match=re.escape(key)):
                load_config(None, [f"{key}=not_a_choice"])
            checked += 1
            continue
        iv = interval(allowed)
        if iv is None or iv[1] == "-inf":
            continue
        lo = float(iv[1])
        below = lo - 1 if r["type"] == "int" else lo - 1e-3
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}="):
            load_config(None, [f"{key}={below}"])
        if iv[0] == "(":
            with pytest.raises(ConfigError, match=rf"^{re.escape(key)}="):
                load_config(None, [f"{key}={lo}"])
        else:
            try:
                load_config(None, [f"{key}={lo}"])
            except ConfigError as e:  # a rule tying fields together may refuse it, not the range
                assert "must be in" not in str(e) or not str(e).startswith(key), e
        checked += 1
    assert checked > 80


def test_a_bad_prefix_is_one_error_line_naming_it_and_exit_2(root):
    proc = subprocess.run([sys.executable, "-m", "plaml_lab", "config",
                           "experiments/configs/lab.yaml", "teachers.labeling"],
                          capture_output=True, text=True, cwd=root, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(
        "error: unknown config key or section 'teachers.labeling'; did you mean "
        "teachers.labelling"), proc.stderr


def test_select_refuses_a_prefix_that_is_only_the_start_of_a_key_name():
    rows = describe(PretrainConfig(), PretrainConfig())
    with pytest.raises(ConfigError, match="'pl.num'"):
        select(rows, "pl.num")  # a prefix is a section or a key, not a string prefix
