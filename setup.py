"""Build step: wheels carry the presets, grids, searches and notebooks (plaml_lab/paths.py reads
them).

The top-level experiments/configs, experiments/grids, experiments/searches and notebooks/ stay
the source of truth (the repo layout is fixed); a non-editable build copies them into
plaml_lab/_shipped/ inside the wheel. An editable install reads the checkout's own folders
instead, so nothing is copied. Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# the same table as plaml_lab.paths.SHIPPED (not imported: the package needs torch)
SHIPPED = {"configs": ("experiments/configs", "*.yaml"),
           "grids": ("experiments/grids", "*.yaml"),
           "searches": ("experiments/searches", "*.yaml"),
           "notebooks": ("notebooks", "*.ipynb")}


class BuildWithShippedFiles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for kind, (folder, pattern) in SHIPPED.items():
            dest = Path(self.build_lib) / "plaml_lab" / "_shipped" / kind
            self.mkpath(str(dest))
            for f in sorted((HERE / folder).glob(pattern)):
                self.copy_file(str(f), str(dest / f.name))


setup(cmdclass={"build_py": BuildWithShippedFiles})
