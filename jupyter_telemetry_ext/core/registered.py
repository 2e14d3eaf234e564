"""`EventLog.schemas`: a list of EventSchema that also reads as jupyter_telemetry's mapping."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, SupportsIndex, overload

from .schema import EventSchema, version_key

SchemaKey = tuple[str, object]


class RegisteredSchemas(list[EventSchema]):
    """Every registered schema version, as a list of EventSchema (what iterating it yields).

    It also reads as jupyter_telemetry's `EventLog.schemas`, a mapping of `(id, version)` to
    the schema document: `schemas[(id, version)]`, `(id, version) in schemas`, `get`, `keys`,
    `values`, `items` and `dict(schemas)`. `1` and `"1"` name the same version. The documents
    are copies: changing one changes nothing registered.
    """

    @overload
    def __getitem__(self, key: SupportsIndex) -> EventSchema: ...
    @overload
    def __getitem__(self, key: slice) -> list[EventSchema]: ...
    @overload
    def __getitem__(self, key: SchemaKey) -> dict[str, Any]: ...

    def __getitem__(self, key: SupportsIndex | slice | SchemaKey) -> Any:
        """Return a schema by position, or a schema's document by `(id, version)`."""
        if isinstance(key, tuple):
            found = self._find(key)
            if found is None:
                raise KeyError(key)
            return self.document(found)
        return super().__getitem__(key)

    def __contains__(self, item: object) -> bool:
        """Return True for a registered EventSchema or `(id, version)`."""
        if isinstance(item, tuple):
            return self._find(item) is not None
        return super().__contains__(item)

    def get(self, key: SchemaKey, default: Any = None) -> Any:
        """Return the document of `(id, version)`, or `default` when it is not registered."""
        found = self._find(key)
        return default if found is None else self.document(found)

    def keys(self) -> list[tuple[str, str | int]]:
        """Return `(id, version)` of each schema, the version as the schema declares it."""
        return [(schema.id, schema.version) for schema in self]

    def values(self) -> list[dict[str, Any]]:
        """Return each schema's document."""
        return [self.document(schema) for schema in self]

    def items(self) -> Iterator[tuple[tuple[str, str | int], dict[str, Any]]]:
        """Yield `((id, version), document)` for each schema."""
        return zip(self.keys(), self.values(), strict=True)

    def document(self, schema: EventSchema) -> dict[str, Any]:
        """Return a copy of the document a schema reads as."""
        return copy.deepcopy(schema.document)

    def _find(self, key: tuple[Any, ...]) -> EventSchema | None:
        if len(key) != 2:
            return None
        schema_id, version = key
        wanted = version_key(version)
        return next((s for s in self if s.id == schema_id and s.version_key == wanted), None)
