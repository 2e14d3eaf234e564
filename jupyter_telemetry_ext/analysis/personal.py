"""Which columns of a schema's events a dataset may hold: by the schema's privacy categories.

A column is kept when every category of its place in the schema is allowed (`unrestricted`, and
those the researcher names); the verdicts are the recorder's own redaction plan, so a dataset
never holds what recording under the same allow-list would have redacted. A column whose schema
is unknown, or that holds a mix of allowed and other values (a list of partly personal
objects), is left out: privacy fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable

from jupyter_telemetry_ext.core.allowlist import SchemaRule
from jupyter_telemetry_ext.core.categories import UNRESTRICTED, CategoryNode
from jupyter_telemetry_ext.core.redaction import (
    KEEP,
    REDACT,
    Descend,
    KeySteps,
    Redactor,
    Step,
    default_categories,
)
from jupyter_telemetry_ext.core.schema import EventSchema

UNKNOWN = "unknown: the schema was not found"


class ColumnRules:
    """The verdict and the categories of each property column of one schema version."""

    def __init__(self, schema: EventSchema | None, allowed: Iterable[str]) -> None:
        """Plan the columns of `schema` (None: not found) for the `allowed` categories."""
        self.schema = schema
        self.allowed = frozenset({UNRESTRICTED, *allowed})
        self._top: Step = REDACT
        if schema is not None:
            rule = SchemaRule(categories=self.allowed)
            redactor = Redactor.plan(schema.categories, rule, personal_data=schema.personal_data,
                                     drop=True)  # fmt: skip
            self._top = redactor.top

    def keeps(self, path: tuple[str, ...]) -> bool:
        """Return True when the column at `path` (a property, or a nested leaf) may be kept."""
        step = self._top
        for key in path:
            if not isinstance(step, Descend):
                break
            sub = step.properties.get(key, step.other_keys)
            step = sub(key) if isinstance(sub, KeySteps) else sub
        return step is KEEP

    def categories(self, path: tuple[str, ...]) -> list[str]:
        """Return the categories the schema gives the place at `path`."""
        if self.schema is None:
            return [UNKNOWN]
        inherited = default_categories(personal_data=self.schema.personal_data)
        node: CategoryNode | None = self.schema.categories
        for key in path:
            node = node.key(key) if node is not None and not node.opaque else None
            if node is not None and node.categories is not None:
                inherited = node.categories
        return sorted(inherited)
