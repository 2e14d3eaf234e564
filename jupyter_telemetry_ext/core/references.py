"""Following a schema's `$ref`s as the validator does, with jsonschema's resolver (`referencing`).

A scope is the resolver of the place being read: it knows the base URI (`$id`s change it),
the anchors and the embedded resources. Nothing is ever fetched: a reference that does not
point into the schema itself is an error.

A root `$id` without a scheme (`my.url.to.schema/actions`, as the seed's schemas have) is read
against a base of its own, as the validator reads it against `json-schema:///`: `referencing`
joins a relative id to itself while indexing, so its anchors would otherwise be filed under a
URI that no reference reaches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from .errors import EventSchemaError

DRAFT7 = "http://json-schema.org/draft-07/schema#"
# The base a relative root `$id` is read against (`.invalid` names nothing that could be fetched).
RELATIVE_BASE = "https://relative-id.invalid/"


class References:
    """The references of one schema document."""

    def __init__(self, document: Mapping[str, Any], where: str) -> None:
        """Index the document's resources and anchors (only when it has a `$ref` at all)."""
        self.where = where
        self.document = document
        self.root: Any = None
        self._specification: Any = None
        if _has_reference(document):
            self._index()

    def _index(self) -> None:
        import referencing
        import referencing.jsonschema

        self._specification = referencing.jsonschema.specification_with(
            self.document.get("$schema", DRAFT7), default=referencing.jsonschema.DRAFT7
        )
        resource = self._absolute_root()
        uri = resource.id() or ""
        registry: Any = referencing.Registry(retrieve=_no_retrieval)  # type: ignore[call-arg]
        registry = registry.with_resource(uri, resource).crawl()
        self.root = registry.resolver(base_uri=uri)

    def _absolute_root(self) -> Any:
        """Return the root resource, its relative `$id` (in `document` too) made absolute."""
        resource = self._specification.create_resource(self.document)
        uri = resource.id()
        if uri is None or urlsplit(uri).scheme:
            return resource
        from referencing.jsonschema import DRAFT3, DRAFT4

        legacy = self._specification in (DRAFT3, DRAFT4)
        self.document = {**self.document, "id" if legacy else "$id": urljoin(RELATIVE_BASE, uri)}
        return self._specification.create_resource(self.document)

    def enter(self, schema: Any, scope: Any) -> Any:
        """Return the scope of a subschema reached from `scope` (its `$id`, or `id` in draft 4,
        may change the base)."""
        if scope is None or not isinstance(schema, Mapping):
            return scope
        return scope.in_subresource(self._specification.create_resource(schema))

    def lookup(self, ref: Any, scope: Any) -> tuple[Any, Any]:
        """Return the subschema a `$ref` points at and its scope; raise EventSchemaError if none."""
        from referencing.exceptions import Unresolvable

        if not isinstance(ref, str) or scope is None:
            msg = f"{self.where}: $ref: must be a string"
            raise EventSchemaError(msg)
        try:
            resolved = scope.lookup(ref)
        except Unresolvable:
            msg = f"{self.where}: $ref {ref!r}: does not point at a subschema of this schema"
            raise EventSchemaError(msg) from None
        return resolved.contents, resolved.resolver


def _no_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(uri)


def _has_reference(value: Any) -> bool:
    """Return True when `$ref` is a key anywhere in the document."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, Mapping):
            if "$ref" in current:
                return True
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return False
