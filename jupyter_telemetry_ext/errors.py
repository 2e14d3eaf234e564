"""Exceptions raised by the telemetry library."""

from __future__ import annotations

import sys
from typing import Any


class EventSchemaError(ValueError):
    """A schema cannot be registered: it names the file, the key and what is wrong.

    Once jsonschema is imported (by the code that would catch `jsonschema.SchemaError`), the
    error raised is also a `jsonschema.exceptions.SchemaError`, as jupyter_telemetry's was;
    this module does not import jsonschema itself, which is slow to import.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> EventSchemaError:
        """Build the jsonschema-compatible subclass when jsonschema is loaded."""
        built = cls
        if cls is EventSchemaError and "jsonschema" in sys.modules:
            from . import jsonschema_compat

            built = jsonschema_compat.EventSchemaError
        return super().__new__(built, *args, **kwargs)


class UnknownSchemaError(LookupError):
    """An event names a schema id and version that were never registered."""

    def __init__(self, schema_id: str, version: object) -> None:
        """Build the message from the unknown schema id and version."""
        self.schema_id = schema_id
        self.version = version
        super().__init__(f"unknown schema: {schema_id!r} version {version!r} is not registered")

    def __str__(self) -> str:
        """Return the message without the quotes LookupError adds."""
        return str(self.args[0])


class SecretFileError(ValueError):
    """The file of the user-hash key cannot be used: it names the file and what to do."""
