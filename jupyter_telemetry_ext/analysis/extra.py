"""The `[analysis]` extra (DuckDB, pandas, pyarrow): imported when used, or a clear error."""

from __future__ import annotations

import importlib
from types import ModuleType

from jupyter_telemetry_ext.core.errors import AnalysisExtraError

INSTALL = "pip install 'jupyter_telemetry_ext[analysis]'"


def require(name: str) -> ModuleType:
    """Return the module `name` of the extra; raise AnalysisExtraError naming what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        msg = f"reading events in bulk needs {name}, of the [analysis] extra: {INSTALL}"
        raise AnalysisExtraError(msg) from e
