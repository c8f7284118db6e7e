"""`python -m plaml_lab ...` (and `torchrun -m plaml_lab pretrain ...`)."""

import sys

from plaml_lab.cli import main

sys.exit(main())
