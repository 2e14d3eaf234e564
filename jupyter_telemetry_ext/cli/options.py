"""The base of the `jupyter telemetry` report commands: a bad option value stops them."""

from __future__ import annotations

from traitlets import TraitError
from traitlets.config import Config

from jupyter_telemetry_ext.core.command import Command


class CliCommand(Command):
    """A command whose option with a value it cannot take is one line and exit status 2."""

    def update_config(self, config: Config) -> None:
        """Take options; one that is not a valid value stops the command (exit status 2)."""
        try:
            super().update_config(config)
        except TraitError as e:  # traitlets would log it as a CRITICAL line and exit 1
            self.fail(f"bad option: {e}")
