"""An extension whose config must load, or the server stops: jupyter_server only logs.

A config file that raises is skipped whole by traitlets (an ERROR in the log, then the server
runs as if the file did not exist), and an invalid option makes jupyter_server load the
extension with part of its config: either way the extension would start with no allow-list or
no sinks, and record nothing. The files that exist but were not loaded are run again here to
tell a failure (its error) from a file that sets nothing (e.g. all commented out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, TraitError

from jupyter_telemetry_ext.core.config_failure import config_failure

BASE_CONFIG = "jupyter_config"  # read by every Jupyter application before its own


class StrictConfigApp(ExtensionApp):
    """An ExtensionApp that stops the server when its config, or the server's, cannot be used."""

    # An exception in the extension's own config file (jupyter_<name>_config.py) is raised.
    raise_config_file_errors = Bool(True)

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """Load the extension's own config files; one that raises stops the server."""
        try:
            super().load_config_file(suppress_errors)
        except Exception as e:  # anything a config file raises: it is the admin's Python
            self.refuse_to_start([config_failure(e)])

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Take the config; an invalid option stops the server (jupyter_server would log it and
        load the extension with part of its config)."""
        try:
            super()._link_jupyter_server_extension(serverapp)
        except TraitError as e:
            self.refuse_to_start([f"an option is invalid: {e}"])

    def check_server_config(self) -> None:
        """Stop the server when one of its config files failed: the extension's may be in it."""
        failures = failed_config_files(self.serverapp) if self.serverapp is not None else []
        if failures:
            self.refuse_to_start(failures)

    def refuse_to_start(self, failures: list[str]) -> None:
        """Log why at CRITICAL and exit 1: a server running without its config would record
        nothing (no allow-list, no sinks) and say so nowhere."""
        for failure in failures:
            self.log.critical("Telemetry: the config cannot be used, the server stops: %s", failure)
        raise SystemExit(1)  # not an Exception: jupyter_server would log it and start anyway


def failed_config_files(app: Any) -> list[str]:
    """Return `<file>, line <n>: <Error>: <message>` for each of `app`'s files that failed."""
    loaded = {Path(name).resolve() for name in app.loaded_config_files}
    failures = []
    for path in config_files(app):
        if path.resolve() in loaded or not path.is_file():
            continue
        error = load_error(app, path)
        if error is not None:
            failures.append(config_failure(error))
    return failures


def config_files(app: Any) -> Iterator[Path]:
    """Yield the config files `app` reads (`--config`, or its own name), existing or not."""
    folders = [Path(folder) for folder in app.config_file_paths]
    names = [(folder, BASE_CONFIG) for folder in folders]
    if app.config_file:
        config = Path(app.config_file)
        names.append((config.parent, config.stem))
    elif app.config_file_name:
        names.extend((folder, app.config_file_name) for folder in folders)
    for folder, name in dict.fromkeys(names):
        yield folder / f"{name}.py"
        yield folder / f"{name}.json"


def load_error(app: Any, path: Path) -> Exception | None:
    """Run a config file again; return what it raises, None when it loads."""
    kind = app.python_config_loader_class if path.suffix == ".py" else app.json_config_loader_class
    loader = kind(path.name, path=str(path.parent))
    try:
        loader.load_config()
    except Exception as e:  # anything the file raises: it is the admin's Python
        return e
    return None
