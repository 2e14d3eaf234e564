"""Finding event schema files: `telemetry/schemas` in every Jupyter data path, plus extra folders.

Any package can ship schemas by installing them as data files into
`share/jupyter/telemetry/schemas/<package>/`. Nothing here imports tornado or jupyter_server,
so command-line tools can find the same schemas as the server.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from jupyter_core.paths import jupyter_path

from .errors import EventSchemaError
from .eventlog import EventLog
from .printable import printable
from .schema import EventSchema

SUBDIR = ("telemetry", "schemas")
SUFFIXES = frozenset({".yaml", ".yml", ".json"})


def schema_folders(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Return `telemetry/schemas` of every Jupyter data path (user first), then `extra`."""
    return [Path(folder) for folder in jupyter_path(*SUBDIR)] + [Path(p) for p in extra]


def schema_files(folder: Path) -> list[Path]:
    """Return the schema files under a folder (or the file itself), skipping hidden entries."""
    if folder.is_file():
        return [folder] if folder.suffix in SUFFIXES else []
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, f) for f in sorted(files) if _is_schema_file(f)]
    return found


def _is_schema_file(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix in SUFFIXES


def discover(folders: Iterable[Path]) -> Iterator[Path]:
    """Yield each schema file under the folders once, in folder order."""
    seen: set[Path] = set()
    for folder in folders:
        for path in schema_files(folder):
            resolved = path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield path


def register_discovered(
    eventlog: EventLog, folders: Iterable[Path], log: logging.Logger
) -> list[EventSchema]:
    """Register every schema file found; log a broken one with its path and reason, and skip it."""
    registered = []
    for path in discover(folders):
        try:
            registered.append(eventlog.register_schema_file(path))
        except EventSchemaError as e:
            log.warning("Skipped a telemetry schema file: %s", printable(str(e)))
    return registered
