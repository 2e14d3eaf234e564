"""The base of every `jupyter telemetry` command, the collector's among them."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from jupyter_core.application import JupyterApp
from traitlets.config.loader import KVArgParseConfigLoader

from jupyter_telemetry_ext._version import __version__


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"jupyter telemetry: {message}", file=sys.stderr)
    raise SystemExit(code)


class StrictLoader(KVArgParseConfigLoader):
    """Command-line options where a mistyped one stops the command instead of being ignored."""

    def _handle_unrecognized_alias(self, arg: str) -> None:
        _fail(f"unknown option --{arg} (see --help)")


class Command(JupyterApp):
    """A `jupyter telemetry` subcommand: errors are one line on stderr, never a traceback."""

    version = __version__

    def _create_loader(self, argv: Any, aliases: Any, flags: Any, classes: Any) -> StrictLoader:
        return StrictLoader(
            argv, aliases, flags, classes=classes, log=self.log, subcommands=self.subcommands
        )

    def fail(self, message: str, code: int = 2) -> NoReturn:
        """Print an error and exit."""
        print(f"jupyter telemetry: {message}", file=sys.stderr)
        self.exit(code)
        raise SystemExit(code)  # unreachable: exit raises


class CommandGroup(Command):
    """A subcommand of subcommands (`jupyter telemetry audit check`): runs the one named."""

    def start(self) -> None:
        """Run the subcommand, or say which there are."""
        if self.subapp is None:
            group = self.name.removeprefix("jupyter-telemetry-")
            self.fail(
                f"{group}: name a subcommand ({', '.join(self.subcommands)}); --help for more"
            )
        self.subapp.start()
