"""The package's shape: no import cycle, imports at the top of modules (a function-local one
only to keep a slow import off a cheap path, and then with a comment saying so), modules of a
readable size, a `plaml-lab --help` that imports no torch, and a method package
(plaml_lab.method) that imports nothing of plaml_lab outside itself and nothing beyond torch,
timm and the standard library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plaml_lab import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plaml_lab"
MAX_LINES = 420
METHOD = "plaml_lab.method"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """plaml_lab modules `name` imports when it is imported (module level, not in functions),
    including the packages above each (importing a.b.c runs a/__init__ and a/b/__init__)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                cand = ".".join(parts[:i])
                if cand in known and cand != name:
                    out.add(cand)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {n: top_level_imports(p, n, known) for n, p in mods.items()}
    for n in graph:  # a package's own __init__ may import its submodules: that is no cycle
        graph[n] = {m for m in graph[n] if not n.startswith(m + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "plaml_lab.train" in graph["plaml_lab.lab.ablation"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_local_imports_carry_a_comment_saying_why():
    """A function-local import hides the import graph; the few that keep a slow import (torch,
    scikit-learn, torchvision, the dashboards) off a cheap path say so on the line (or the
    line above)."""
    silent = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        if "#" not in lines[sub.lineno - 1] + lines[sub.lineno - 2]:
                            silent.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
    assert not silent, silent


def test_no_module_is_longer_than_a_readable_sitting():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_help_imports_no_torch_and_lists_every_sub_command():
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "plaml_lab", "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "plaml_lab.cli" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "numpy", "timm"))
    assert not heavy, heavy[:5]
    for command in ("pretrain", "eval", "export", "finetune", "sweep", "bench", "ablation",
                    "demo", "config"):
        assert command in proc.stdout
    assert seconds < 10  # in practice ~0.15 s; the bound only catches a heavy import


def test_a_sub_command_whose_module_fails_to_import_is_an_error_not_a_missing_choice(monkeypatch):
    monkeypatch.setitem(sys.modules, "plaml_lab.lab.sweep", None)  # import now raises
    args = cli.build_parser().parse_args(["sweep", "grid.yaml"])  # still a known sub-command
    assert args.command == "sweep"
    with pytest.raises(ImportError, match="plaml_lab.lab.sweep"):
        cli.main(["sweep", "grid.yaml"])


@pytest.mark.parametrize("command", ["ablation", "demo"])
def test_ablation_and_demo_are_plaml_lab_sub_commands(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: plaml-lab {command}" in capsys.readouterr().out


def modules_loaded_by(code: str) -> set[str]:
    """sys.modules after running `code` in a fresh interpreter (nothing else imported first)."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def outside_the_method(loaded: set[str], baseline: set[str]) -> list[str]:
    """The modules of `loaded` that the method package may not pull in: plaml_lab modules outside
    it, and top-level packages that are neither the standard library nor loaded by importing
    torch and timm (`baseline`: their own dependencies)."""
    allowed_roots = set(sys.stdlib_module_names) | {m.split(".")[0] for m in baseline}
    return sorted(m for m in loaded - baseline
                  if (m.split(".")[0] == "plaml_lab" and m != "plaml_lab"
                      and not m.startswith(METHOD + ".") and m != METHOD)
                  or (m.split(".")[0] != "plaml_lab" and m.split(".")[0] not in allowed_roots))


def test_the_method_package_imports_only_itself_torch_timm_and_the_standard_library():
    baseline = modules_loaded_by("import torch, timm")
    # every module of the package, and every name it exports (they load on first use)
    loaded = modules_loaded_by(
        "import importlib, pkgutil\n"
        f"import {METHOD} as m\n"
        "for info in pkgutil.iter_modules(m.__path__):\n"
        f"    importlib.import_module('{METHOD}.' + info.name)\n"
        "for name in m.__all__:\n"
        "    getattr(m, name)")
    assert f"{METHOD}.plaml" in loaded and "torch" in loaded
    assert not outside_the_method(loaded, baseline)


def test_the_method_import_check_flags_other_plaml_lab_modules_and_foreign_packages():
    baseline = {"torch", "timm", "numpy"}
    loaded = baseline | {"plaml_lab", f"{METHOD}", f"{METHOD}.plaml", "json", "plaml_lab.config",
                         "yaml", "numpy.linalg"}
    assert outside_the_method(loaded, baseline) == ["plaml_lab.config", "yaml"]
