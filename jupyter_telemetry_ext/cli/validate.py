"""`jupyter telemetry validate`: check event schemas with the rules used at registration."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from enum import IntEnum
from pathlib import Path
from typing import IO, Any

from traitlets import Bool

from jupyter_telemetry_ext.core.errors import EventSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.events_schema import check_schema, with_defaults
from jupyter_telemetry_ext.core.printable import printable
from jupyter_telemetry_ext.core.schema import EventSchema, load_document

from .options import CliCommand

# How schema text given on the command line is named in messages.
TEXT = "<text>"


class RC(IntEnum):
    """Exit statuses of `jupyter telemetry validate`, the same as `jupyter-events validate`'s."""

    OK = 0
    INVALID = 1
    UNPARSABLE = 2


class ValidateCommand(CliCommand):
    """Check schema files with the rules used at registration."""

    name = "jupyter-telemetry-validate"
    description = """Check event schemas (YAML or JSON files, or a schema's text given as an
    argument) with the same rules as registration. Prints one line per schema, naming the file
    and, for a problem, the key (on stderr). Exit status: 0 when every schema is valid, 1 when
    some are invalid, 2 when some cannot be read (no such file, not YAML or JSON, not a
    mapping)."""
    examples = "jupyter telemetry validate schemas/*/v1.yaml"
    eventlogger = Bool(
        False,
        help="""Check with EventLogger's rules (jupyter_events'): `title` and `description`
        optional, `$id` a URI. False (the default): EventLog's, which require both.""",
    ).tag(config=True)
    flags = {  # noqa: RUF012 - traitlets reads these class attributes
        "eventlogger": ({"ValidateCommand": {"eventlogger": True}}, "EventLogger's rules.")
    }

    def start(self) -> None:
        """Validate each schema named on the command line."""
        if not self.extra_args:
            self.fail("validate: name one or more schema files")
        eventlog = EventLog()
        codes = [self._check(eventlog, argument) for argument in self.extra_args]
        print(f"{codes.count(RC.OK)} valid, {len(codes) - codes.count(RC.OK)} with problems")
        self.exit(max(codes))

    def _check(self, eventlog: EventLog, argument: str) -> RC:
        name, source = _source(argument)
        if source is None:
            return _problem(f"{name}: Schema file not present", RC.UNPARSABLE)
        try:
            document, _ = load_document(source)
        except EventSchemaError as e:
            detail = _detail(e, name)
            return _problem(f"{name}: Could not deserialize the schema: {detail}", RC.UNPARSABLE)
        if not isinstance(document, Mapping):
            kind = type(document).__name__
            msg = f"{name}: Could not deserialize the schema into a mapping: got {kind}"
            return _problem(msg, RC.UNPARSABLE)
        try:
            schema = self._register(eventlog, document, name)
        except EventSchemaError as e:
            detail = _detail(e, name) + self._hint(_detail(e, name))
            return _problem(f"{name}: The schema failed to validate: {detail}", RC.INVALID)
        print(printable(f"{name}: This schema is valid ({schema.id} version {schema.version})"))
        return RC.OK

    def _hint(self, detail: str) -> str:
        """Say how to check a jupyter_events schema, whose title and description are optional."""
        if self.eventlogger or not detail.startswith(("title:", "description:")):
            return ""
        return " (for jupyter_events' EventLogger, where it is optional, add --eventlogger)"

    def _register(self, eventlog: EventLog, document: Mapping[str, Any], name: str) -> EventSchema:
        """Register the document as EventLog (or, with --eventlogger, EventLogger) would."""
        if self.eventlogger:
            from jsonschema import ValidationError  # slow to import: only for EventLogger's rules

            try:
                check_schema(document)
            except ValidationError as e:
                raise EventSchemaError(e.message) from e
            document = with_defaults(document)
        return eventlog.register_schema(EventSchema(document, source=name))


def _source(argument: str) -> tuple[str, Path | IO[str] | None]:
    """Return a schema argument's name and what to read: a file, text, or None (no such file)."""
    path = Path(argument)
    if path.exists():
        return argument, path
    if "\n" in argument or argument.lstrip().startswith("{"):
        return TEXT, io.StringIO(argument)
    return argument, None


def _detail(error: Exception, name: str) -> str:
    """Return an error's message without the schema's name in front."""
    return str(error).removeprefix(f"{name}: ").removeprefix("<schema file>: ")


def _problem(message: str, code: RC) -> RC:
    print(printable(message), file=sys.stderr)
    return code
