"""The capsule: what is recorded of one event, planned once per schema version, and its JSON line.

A `Plan` holds what the allow-list, `unrestricted_only` and the redaction mode make of one
schema version; `build` fills a capsule by it, and `encode` writes the capsule as one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson

from .allowlist import SchemaRule
from .categories import UNRESTRICTED, USER_IDENTIFIER
from .errors import NotJSONError
from .jsonline import check, encode_standard
from .jsonline import encode as _encode
from .redaction import Redactor
from .schema import EventSchema

METADATA_VERSION = 2
# Optional capsule fields (metadata version 2) and the privacy category of each.
CONTEXT_FIELDS = {
    "__event_time__": UNRESTRICTED,
    "__client_id__": UNRESTRICTED,
    "__user__": USER_IDENTIFIER,
}
Encoder = Callable[[Mapping[str, Any], EventSchema], str]
_NO_CONTEXT: Mapping[str, Any] = {}


class Plan(NamedTuple):
    """What recording an event of one schema version takes, planned once."""

    schema: EventSchema
    is_valid: Callable[[Any], bool]
    rule: SchemaRule | None  # None: the allow-list does not record the schema
    redactor: Redactor | None
    context_kept: frozenset[str] = frozenset()
    rate: float | None = None  # the sampling rate, None when every event is kept


def plan(
    schema: EventSchema,
    rule: SchemaRule | None,
    *,
    drop: bool,
    unrestricted_only: bool,
    rate: float | None = None,
) -> Plan:
    """Plan a schema's capsules under its allow-list rule (None: not recorded).

    `unrestricted_only` narrows the rule to unrestricted data; `drop` leaves redacted keys out
    rather than null.
    """
    if rule is None:
        return Plan(schema, schema.is_valid, None, None)
    if unrestricted_only:
        rule = rule.restricted_to_unrestricted()
    redactor = Redactor.plan(schema.categories, rule, personal_data=schema.personal_data, drop=drop)
    kept = frozenset(k for k, category in CONTEXT_FIELDS.items() if category in rule.categories)
    return Plan(schema, schema.is_valid, rule, redactor, kept, rate)


def build(
    redactor: Redactor,
    schema: EventSchema,
    event: Mapping[str, Any],
    timestamp: str,
    *,
    context: Mapping[str, Any] | None,
    context_kept: frozenset[str],
) -> dict[str, Any]:
    """Return the capsule of an event: its metadata, context fields and redacted properties.

    When the plan keeps every context field given and every property, the capsule is made in
    one step (no key is looked at on its own). A value redacted or left out that JSON cannot
    hold raises EventValidationError, as a kept one does when the capsule is written.
    """
    if redactor.keeps_all and (not context or context.keys() <= context_kept):
        return {
            "__timestamp__": timestamp,
            "__schema__": schema.id,
            "__schema_version__": schema.version,
            "__metadata_version__": METADATA_VERSION,
            **(context or _NO_CONTEXT),
            **event,
        }
    capsule: dict[str, Any] = {
        "__timestamp__": timestamp,
        "__schema__": schema.id,
        "__schema_version__": schema.version,
        "__metadata_version__": METADATA_VERSION,
    }
    try:
        if context:
            _add_context(capsule, context, context_kept, drop=redactor.drop)
        redactor.copy_into(capsule, event)
    except NotJSONError as e:
        from .validation import not_json_error

        described = {**context, **event} if context else event
        raise not_json_error(described, schema.id, schema.version, schema.categories) from e
    return capsule


def _add_context(
    capsule: dict[str, Any], context: Mapping[str, Any], kept: frozenset[str], *, drop: bool
) -> None:
    for key, value in context.items():
        if key not in CONTEXT_FIELDS:
            msg = f"unknown capsule field {key!r}: known are {sorted(CONTEXT_FIELDS)}"
            raise ValueError(msg)
        if key in kept:
            capsule[key] = value
        else:
            check(value)  # not recorded, it must still be JSON, as a kept one must
            if not drop:
                capsule[key] = None


def encode(
    value: Mapping[str, Any], schema: EventSchema, encoder: Callable[[Any], str] = _encode
) -> str:
    """Return a capsule (or an event) as one JSON line; raise a validation error if not JSON."""
    try:
        return encoder(value)
    except (TypeError, ValueError) as e:
        from .validation import not_json_error

        raise not_json_error(value, schema.id, schema.version, schema.categories) from e


def encode_read(value: Mapping[str, Any], schema: EventSchema) -> str:
    """Encode a capsule of values read from JSON text: orjson, unless the line is not ASCII."""
    try:
        line = orjson.dumps(value)
    except orjson.JSONEncodeError:  # not as read from JSON text after all: say why
        return encode(value, schema)
    return line.decode() if line.isascii() else encode(value, schema, encode_standard)
