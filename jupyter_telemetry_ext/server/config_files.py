"""The server's config files that failed to run: jupyter_server logs them and starts without.

A config file that raises is skipped whole by traitlets (an ERROR in the log, then the server
runs as if the file did not exist): the extension would start with an empty allow-list and no
sinks, and record nothing. The files that exist but were not loaded are run again here to tell
a failure (its error) from a file that sets nothing (e.g. all commented out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jupyter_telemetry_ext.core.config_failure import config_failure

BASE_CONFIG = "jupyter_config"  # read by every Jupyter application before its own


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
