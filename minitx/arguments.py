"""What every minitx command line shares: bad input is one line and exit code 2."""

from __future__ import annotations

import argparse
import typing


class OneLineArgumentParser(argparse.ArgumentParser):
    """Bad input ends with one line and exit code 2, not a usage dump or a traceback."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
