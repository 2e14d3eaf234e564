"""Exceptions raised by the telemetry library."""

from __future__ import annotations


class EventSchemaError(ValueError):
    """A schema cannot be registered: it names the file, the key and what is wrong."""


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
