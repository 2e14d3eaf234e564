"""The base of every `jupyter telemetry` command, the collector's among them."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from jupyter_core.application import JupyterApp
from traitlets import TraitError
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

    _reading_command_line = False

    def parse_command_line(self, argv: Any = None) -> None:
        """Read the command line's options (see `update_config`)."""
        self._reading_command_line = True
        try:
            super().parse_command_line(argv)
        finally:
            self._reading_command_line = False

    def update_config(self, config: Any) -> None:
        """Take the options; a value an option of the command line refuses (`--by week`) is a
        bad option: one line, exit status 2 (traitlets would log it as CRITICAL and exit 1, the
        status of "nothing found")."""
        try:
            super().update_config(config)
        except TraitError as e:
            if not self._reading_command_line:  # a config file's: the caller says which file
                raise
            self.fail(f"{self.name.removeprefix('jupyter-telemetry-')}: {e}")

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
