"""Every exception the package raises, in one place.

`EventValidationError` is the one defined elsewhere (in `validation`): it is a
`jsonschema.ValidationError`, and jsonschema is slow to import. It is found here too, imported
when first asked for.
"""

from __future__ import annotations

import sys
from typing import Any

from .printable import printable

_ALLOW_LIST_FORMS = (
    "c.EventLog.allowed_schemas takes one of three forms: "
    "a list of schema ids ['<id>', ...] (unrestricted properties only); "
    "a list of tuples [('<id>', [<allowed actions>], [<allowed properties>]), ...]; "
    "or a dict {'<id>': {'allowed_actions': [...], 'allowed_categories': [...], "
    "'allowed_properties': [...]}} (every key optional)"
)


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


class UnregisteredSchemaError(UnknownSchemaError, ValueError):
    """An unknown schema, as jupyter-telemetry 0.1's `record_event` raised it: a ValueError."""


class SecretFileError(ValueError):
    """The file of the user-hash key cannot be used: it names the file and what to do."""


# The library: its configuration and its handlers


class AllowListError(ValueError):
    """The allow-list is not one of the accepted forms."""

    def __init__(self, problem: str) -> None:
        """Build a message that says what is wrong and shows the accepted forms."""
        super().__init__(f"{problem}. {_ALLOW_LIST_FORMS}.")


class SamplingError(ValueError):
    """`EventLog.sampling` is not `{schema_id: rate}` with 0 < rate <= 1."""


class TimestampError(ValueError):
    """A timestamp is not an RFC 3339 date-time with a UTC offset."""


class QueueFullError(RuntimeError):
    """The background writer's queue is full: the event was not accepted."""

    reply = "the server's event queue is full; retry later"  # told to clients (no sizes)


class SpoolFullError(QueueFullError):
    """The forwarding spool is full and refuses new events (`forward_when_full = "refuse"`)."""

    reply = "the forwarding spool is full (the collector takes no events); retry later"


class ReplyError(Exception):
    """A collector's reply the forwarder does not read: too large, or not in time."""


class ReplyTooLargeError(ReplyError):
    """The collector's reply is larger than the forwarder reads (1 MiB)."""


class ReplyDeadlineError(ReplyError):
    """A request to the collector and its reply took longer than `forward_timeout` in total."""


class SpoolFolderError(RuntimeError):
    """The forwarding spool folder cannot be trusted (or made): nothing is forwarded from it."""


class ForwardingRefusedError(QueueFullError):
    """Forwarding did not start (its spool folder cannot be trusted): no event is accepted."""

    reply = "the server cannot forward events to the collector (see the server's log)"


class AuditUnavailableError(RuntimeError):
    """An audit event could not be made durable (`audit_required`): what it describes must not
    happen. The message says why, never a value of the event."""


# The server: posts and subscribers


class NotJSONError(ValueError):
    """A value that no JSON line can hold (`jsonline.check`)."""


class LoneSurrogateError(NotJSONError):
    """A string of a value (or a key) holds a lone surrogate: it is not UTF-8 text."""


class JSONBodyError(ValueError):
    """The body is not I-JSON; the message says why, without quoting it."""


class SlowReading(Exception):  # noqa: N818 (not an error: a request for the slower reading)
    """Only the strict reading can tell whether the body keeps the rules (strictjson.loads)."""


class InflateError(ValueError):
    """A gzip body is broken (400) or inflates beyond the limit (413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        """Keep the HTTP status that says why."""
        super().__init__(message)
        self.status = status


class IngestError(ValueError):
    """A posted event (or body) is refused; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        """Keep the HTTP status, and the failing field path if known, beside the message.

        The message goes to the server's log: control characters from posted text are escaped.
        """
        super().__init__(printable(message))
        self.status = status
        self.field = field


class SubscriberLimitError(Exception):
    """A subscriber refused by a cap: `status` 429 (per principal) or 503 (in all)."""

    def __init__(self, message: str, status: int) -> None:
        """Keep the message a client can act on and the HTTP status."""
        super().__init__(message)
        self.status = status


# The PostgreSQL store


class RowError(ValueError):
    """A capsule that makes no row; `sqlstate` is what PostgreSQL would have answered."""

    def __init__(self, sqlstate: str) -> None:
        """Name the reason by its SQLSTATE only (never the value)."""
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


class StoreError(RuntimeError):
    """The PostgreSQL store cannot be used as it is (a newer table, no URL, ...)."""


class StoreUnavailableError(StoreError, OSError):
    """Events handed to the PostgreSQL handler were not committed in time.

    Also an OSError: `logging.shutdown` (which traitlets' dictConfig runs at every server start)
    lets only OSError and ValueError out of a handler's flush pass.
    """


class StoreRefusedError(StoreError):
    """PostgreSQL refused an event for a reason in its data; the message names the SQLSTATE only."""

    def __init__(self, sqlstate: str) -> None:
        """Name the SQLSTATE, never the database's message (it may quote the event's values)."""
        super().__init__(f"refused by PostgreSQL (SQLSTATE {sqlstate})")
        self.sqlstate = sqlstate


class DashboardQueryError(ValueError):
    """A dashboard query argument that cannot be used; the message names the argument."""


class DashboardStoreError(RuntimeError):
    """The dashboard has no store it can read (none configured, or DuckDB not installed)."""

    def __init__(self, message: str, status: int) -> None:
        """Keep the HTTP status the dashboard answers: 501 (an extra missing) or 503."""
        super().__init__(message)
        self.status = status


def __getattr__(name: str) -> Any:
    """Import EventValidationError (a jsonschema.ValidationError) on first use."""
    if name == "EventValidationError":
        from .validation import EventValidationError

        return EventValidationError
    raise AttributeError(name)


class AnalysisExtraError(ImportError):
    """The `[analysis]` extra (DuckDB, pandas, pyarrow) is not installed: says what to install."""


class NothingToExportError(ValueError):
    """A research export's selection holds no event: no dataset is written."""


# jupyter_events' names, for code that catches them (`EventLogger`, the drop-in).


class SchemaNotRegistered(Warning):
    """A warning: an event was emitted for a schema id the EventLogger has not registered."""


class SchemaRegistryException(Exception):  # noqa: N818 - jupyter_events' name
    """A schema id is registered twice with an EventLogger."""


class ModifierError(Exception):
    """A modifier is not a callable `(schema_id, data) -> data`."""


class ListenerError(Exception):
    """A listener is not a callable `(logger, schema_id, data)`."""


class CoreMetadataError(Exception):
    """An event's capsule metadata is not valid."""


class EventSchemaLoadingError(Exception):
    """A schema given to the EventLogger cannot be read (not a mapping, not YAML or JSON)."""


class EventSchemaUnrecognized(EventSchemaLoadingError):  # noqa: N818 - jupyter_events' name
    """A schema is given as something other than a dict, a Path or a YAML/JSON string."""


class EventSchemaFileAbsent(EventSchemaLoadingError):  # noqa: N818 - jupyter_events' name
    """A schema is given as a Path that does not exist."""


class StudyError(ValueError):
    """A study of `EventLog.studies` is not valid: names the study and the field."""


class ConsentError(ValueError):
    """A consent decision cannot be taken: `status` is the HTTP status, `field` what is wrong."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        """Keep the message, the HTTP status (400, 404 or 409) and the field named."""
        super().__init__(message)
        self.status = status
        self.field = field


class OutOfRangeError(ValueError):
    """A property holds an integer beyond int64, which no integer column (int64) holds."""
