"""Commands that read the deployment's config: a config that is missing or fails stops them."""

from __future__ import annotations

from pathlib import Path

from traitlets import Bool

from jupyter_telemetry_ext.core.command import Command

from . import deployment


class ConfigCommand(Command):
    """A command that loads the config as Jupyter does, never ignoring a part of it."""

    raise_config_file_errors = Bool(True, help="A config file that fails stops the command.")

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """Load the config as Jupyter does; stop when it is missing or fails (never ignore it)."""
        if self.config_file and not Path(self.config_file).is_file():
            self.fail(f"{self.config_file}: no such config file (--config)")
        with deployment.settings_only():
            try:
                super().load_config_file(suppress_errors=False)
            except Exception as e:  # a config file is Python: anything may fail in it
                self.fail(f"{self.config_where()}: the config file cannot be loaded: "
                          f"{type(e).__name__}: {e}")  # fmt: skip

    def config_where(self) -> str:
        """Name the config file read: the one given with --config, else the config's name."""
        return self.config_file or self.config_file_name
