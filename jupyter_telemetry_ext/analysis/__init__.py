"""Recorded events for analysis: `load_events` (a DataFrame or an Arrow table) and datasets.

Needs the `[analysis]` extra (DuckDB, pandas, pyarrow), imported when a function runs.
"""

from __future__ import annotations

from jupyter_telemetry_ext.core.errors import AnalysisExtraError

from .load import load_events

__all__ = ["AnalysisExtraError", "load_events"]
