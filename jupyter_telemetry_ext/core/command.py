"""The base of every `jupyter telemetry` command, the collector's among them."""

from __future__ import annotations

import sys
from typing import NoReturn

from jupyter_core.application import JupyterApp

from jupyter_telemetry_ext._version import __version__


class Command(JupyterApp):
    """A `jupyter telemetry` subcommand: errors are one line on stderr, never a traceback."""

    version = __version__

    def fail(self, message: str, code: int = 2) -> NoReturn:
        """Print an error and exit."""
        print(f"jupyter telemetry: {message}", file=sys.stderr)
        self.exit(code)
        raise SystemExit(code)  # unreachable: exit raises
