"""The [postgres] extra of the commands on a PostgreSQL store: psycopg, or one line saying so."""

from __future__ import annotations

from jupyter_telemetry_ext.core.command import Command

INSTALL = 'pip install "jupyter_telemetry_ext[postgres]"'


def require_psycopg(command: Command, verb: str) -> None:
    """Stop `command` (exit 2, one line on stderr) when psycopg cannot be imported."""
    try:
        import psycopg  # noqa: F401 - only whether it imports
    except ImportError:  # not installed, or no libpq for it to load
        command.fail(f"{verb}: a PostgreSQL store needs the [postgres] extra, and psycopg "
                     f"cannot be imported: {INSTALL}")  # fmt: skip
