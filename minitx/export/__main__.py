"""`python -m minitx.export`: the command line (minitx.export.cli) runs here."""

import sys

from minitx.export.cli import main

sys.exit(main())
