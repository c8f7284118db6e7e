"""Where a path a user typed points: run folders, presets, grids and notebooks.

One rule for every loader and dashboard, so that `experiments/runs/demo` means the same folder
on the CLI, in a notebook (whose kernel runs in notebooks/) and in a dashboard:

1. an absolute path is itself;
2. a relative path is looked up in the current directory first,
3. then in the repo root (the nearest folder at or above the current directory, else above
   this package, that holds pyproject.toml);
4. for the files the package ships, also a bare preset name (`demo`, `lab`, `quick`, any
   experiments/configs/<name>.yaml) or the path such a file has in a checkout
   (`experiments/configs/demo.yaml`, `experiments/grids/quick_variants.yaml`,
   `notebooks/01_pretrain.ipynb`): the package's copy, so an installed package works from any
   folder.

A checkout keeps those files at the top level (the source of truth); a wheel carries copies in
plaml_lab/_shipped/ (setup.py's build step). An editable install or a source tree reads the
checkout's folders directly.
"""

from __future__ import annotations

from pathlib import Path

from plaml_lab.errors import ConfigError

# kind -> (folder in a checkout, file pattern); setup.py copies the same folders into wheels
SHIPPED = {"configs": ("experiments/configs", "*.yaml"),
           "grids": ("experiments/grids", "*.yaml"),
           "searches": ("experiments/searches", "*.yaml"),
           "notebooks": ("notebooks", "*.ipynb")}
_PACKAGE = Path(__file__).resolve().parent


def checkout_of(start: str | Path) -> Path | None:
    """The nearest folder at or above `start` that holds pyproject.toml, else None."""
    start = Path(start).resolve()
    for folder in [start, *start.parents]:
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


def repo_root(start: str | Path | None = None) -> Path:
    """The project folder (`checkout_of` `start`, default of the current directory, else of
    this package); the current directory when there is none (an installed package used
    outside any checkout)."""
    for s in ([start] if start is not None else [Path.cwd(), _PACKAGE]):
        found = checkout_of(s)
        if found is not None:
            return found
    return Path.cwd().resolve()


def candidates(value: str | Path, bases: list[Path] | None = None) -> list[Path]:
    """Where a typed path may be, in order: itself if absolute; else relative to each of
    `bases`, by default the current directory, then the repo root."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return [p]
    return [b / p for b in (bases if bases is not None else [Path.cwd(), repo_root()])]


def user_path(value: str | Path) -> Path:
    """The first of `candidates` that exists (absolute); when none does, the path as typed
    (relative to the current directory), so that a message about it names what was typed."""
    for c in candidates(value):
        if c.exists():
            return c.resolve()
    return Path(value).expanduser()


def shipped_folder(kind: str) -> Path | None:
    """The folder of a kind of shipped file (configs, grids, searches, notebooks): the package's
    copy (a wheel install), else the checkout's (editable install, source tree), else None."""
    checkout, _ = SHIPPED[kind]
    for folder in (_PACKAGE / "_shipped" / kind, _PACKAGE.parent / checkout):
        if folder.is_dir():
            return folder
    return None


def shipped_names(kind: str) -> list[str]:
    """The names (without suffix) of the shipped files of a kind, e.g. the preset names."""
    folder = shipped_folder(kind)
    return sorted(p.stem for p in folder.glob(SHIPPED[kind][1])) if folder else []


def shipped_file(value: str | Path, kind: str = "configs") -> Path | None:
    """The package's copy of a file given by name (`demo`, `demo.yaml`: a file of `kind`, by
    default a preset) or by its path in a checkout (`experiments/grids/x.yaml`,
    `notebooks/01_pretrain.ipynb`); else None."""
    p = Path(value)
    if p.is_absolute():
        return None
    kinds = [k for k, (checkout, _) in SHIPPED.items() if p.parent.as_posix() == checkout]
    if p.parent == Path("."):
        kinds = [kind]
    for kind in kinds:
        folder = shipped_folder(kind)
        suffix = SHIPPED[kind][1].lstrip("*")
        if folder is not None:
            f = folder / (p.name if p.name.endswith(suffix) else p.name + suffix)
            if f.is_file():
                return f
    return None


def find_file(value: str | Path, what: str = "file", bases: list[Path] | None = None,
              kind: str = "configs") -> Path:
    """A file the user named (a preset, grid, notebook): relative to `bases` (`candidates`),
    then the package's copy (`shipped_file`; a bare name is a file of `kind`). ConfigError
    `<what> not found: <value>` (listing the preset names for a config) when there is none."""
    for c in candidates(value, bases):
        if c.is_file():
            return c.resolve()
    shipped = shipped_file(value, kind)
    if shipped is not None:
        return shipped
    hint = ""
    if kind == "configs" and shipped_names(kind):
        hint = f" (a YAML path, or a preset: {', '.join(shipped_names(kind))})"
    raise ConfigError(f"{what} not found: {value}{hint}")
