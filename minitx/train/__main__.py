"""`python -m minitx.train`: the command line (minitx.cli) runs here."""

import sys

from minitx.cli import main

sys.exit(main())
