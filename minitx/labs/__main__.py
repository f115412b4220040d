"""`python -m minitx.labs`: the labs from a terminal (minitx.labs.cli)."""

import sys

from minitx.labs.cli import main

sys.exit(main())
