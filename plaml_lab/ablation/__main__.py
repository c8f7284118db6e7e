"""`python -m plaml_lab.ablation [...]` = `plaml-lab ablation [...]`."""

import sys

from plaml_lab.cli import main

sys.exit(main(["ablation", *sys.argv[1:]]))
