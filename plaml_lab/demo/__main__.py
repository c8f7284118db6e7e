"""`python -m plaml_lab.demo [...]` = `plaml-lab demo [...]`."""

import sys

from plaml_lab.cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
