"""`python -m isdaa.cli ...` (and `torchrun -m isdaa.cli train ...`): the same as the `isdaa` command."""

import sys

from isdaa.cli import main

sys.exit(main())
