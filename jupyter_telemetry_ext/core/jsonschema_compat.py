"""EventSchemaError that is also jsonschema's SchemaError, as jupyter_telemetry's code expects.

Code written for jupyter_telemetry or jupyter_events catches `jsonschema.SchemaError` for a
bad schema. This module is imported only once jsonschema is (importing jsonschema takes
longer than importing this whole package): `errors.EventSchemaError` then builds this class.
"""

from __future__ import annotations

from jsonschema.exceptions import SchemaError

from . import errors


class EventSchemaError(errors.EventSchemaError, SchemaError):
    """An EventSchemaError (a ValueError) that `except jsonschema.SchemaError` catches too."""

    def __init__(self, message: str) -> None:
        """Keep the message as both exception classes do."""
        SchemaError.__init__(self, message)

    def __str__(self) -> str:
        """Return the message."""
        return str(self.message)

    def __repr__(self) -> str:
        """Return `EventSchemaError('...')`."""
        return f"EventSchemaError({self.message!r})"

    def __reduce__(self) -> tuple[type[EventSchemaError], tuple[str]]:
        """Pickle as the message alone."""
        return type(self), (str(self.message),)
