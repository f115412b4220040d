"""`python -m minitx.generate`: the command line (minitx.generate.cli) runs here."""

import sys

from minitx.generate.cli import main

sys.exit(main())
