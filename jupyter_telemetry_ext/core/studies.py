"""Studies the admin defines (`EventLog.studies`): what each covers, its text, mode and version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .categories import CategoryNode, normalize_labels
from .errors import StudyError
from .schema import EventSchema

# The schema of the decisions' events: recorded whatever the allow-list (the proof of consent).
CONSENT_SCHEMA_ID = "https://events.jupyter.org/jupyter_telemetry_ext/consent"
# The audit's records (TelemetryExtension.audit): the admin's, whatever a user decides, so that
# declining a study (or not granting it) never lets code or commands run unaudited.
AUDIT_SCHEMA_IDS = frozenset(
    f"https://events.jupyter.org/jupyter_telemetry_ext/{name}"
    for name in ("execution", "terminal", "audit-stream", "audit-gap")
)
MODES = ("opt-in", "opt-out", "notice")
STUDY_KEYS = frozenset({
    "title", "text", "text_file", "version", "mode", "schemas", "categories", "groups",
    "erase_on_withdrawal",
})  # fmt: skip


@dataclass(frozen=True)
class Study:
    """One study: its name, title, text (markdown), version, mode and what it covers."""

    name: str
    title: str
    text: str
    version: int
    mode: str
    schemas: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    erase_on_withdrawal: bool = False

    def covers(self, schema: EventSchema) -> bool:
        """Return True when events of `schema` are in this study (by id or by a category)."""
        if schema.id == CONSENT_SCHEMA_ID or schema.id in AUDIT_SCHEMA_IDS:
            return False  # the decisions themselves, and the audit, are always recorded
        if schema.id in self.schemas:
            return True
        return bool(self.categories) and bool(self.categories & labels(schema.categories))

    def applies_to(self, groups: frozenset[str] | None) -> bool:
        """Return True when a user in `groups` is in the study (None: groups unknown, so yes)."""
        return not self.groups or groups is None or bool(self.groups & groups)

    def model(self) -> dict[str, Any]:
        """Return the study as the REST API shows it (without the user's decision)."""
        return {
            "study": self.name, "title": self.title, "text": self.text,
            "version": self.version, "mode": self.mode,
            "erase_on_withdrawal": self.erase_on_withdrawal,
        }  # fmt: skip


def labels(node: CategoryNode) -> frozenset[str]:
    """Return every category declared anywhere in a schema's category tree."""
    found = set(node.categories or ())
    children = [*node.properties.values(), *node.patterns.values()]
    children += [other.node for other in node.other]
    if node.items is not None:
        children.append(node.items)
    for child in children:
        found |= labels(child)
    return frozenset(found)


def parse_studies(value: Any) -> dict[str, Study]:
    """Return every study of `EventLog.studies`, or raise StudyError naming study and field."""
    if not isinstance(value, Mapping):
        msg = f"EventLog.studies must be a dict of studies, not a {type(value).__name__}"
        raise StudyError(msg)
    return {_name(name): parse_study(_name(name), study) for name, study in value.items()}


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name or "/" in name or len(name) > 64:
        msg = "EventLog.studies: a study name must be a string of 1-64 characters without '/'"
        raise StudyError(msg)
    return name


def parse_study(name: str, study: Any) -> Study:
    """Return one study, or raise StudyError naming it and the field at fault."""
    where = f"EventLog.studies[{name!r}]"
    if not isinstance(study, Mapping):
        msg = f"{where} must be a dict, not a {type(study).__name__}"
        raise StudyError(msg)
    unknown = sorted(set(study) - STUDY_KEYS)
    if unknown:
        msg = f"{where}: unknown fields {unknown} (known: {sorted(STUDY_KEYS)})"
        raise StudyError(msg)
    schemas = _names(study, "schemas", where)
    audited = sorted(schemas & AUDIT_SCHEMA_IDS)
    if audited:
        msg = (f"{where}.schemas: {audited[0]} is the audit's record (TelemetryExtension.audit), "
               "which no study governs: a user who declined would run code unaudited")  # fmt: skip
        raise StudyError(msg)
    categories = normalize_labels(_names(study, "categories", where))
    if not schemas and not categories:
        msg = f"{where}: schemas or categories must name what the study covers"
        raise StudyError(msg)
    return Study(
        name=name,
        title=_string(study, "title", where),
        text=_text(study, where),
        version=_version(study, where),
        mode=_mode(study, where),
        schemas=schemas,
        categories=categories,
        groups=_names(study, "groups", where),
        erase_on_withdrawal=_flag(study, "erase_on_withdrawal", where),
    )


def _string(study: Mapping[str, Any], key: str, where: str) -> str:
    value = study.get(key)
    if not isinstance(value, str) or not value.strip():
        msg = f"{where}.{key}: must be a non-empty string"
        raise StudyError(msg)
    return value


def _text(study: Mapping[str, Any], where: str) -> str:
    if ("text" in study) == ("text_file" in study):
        msg = f"{where}.text: give either text or text_file (markdown), not both nor neither"
        raise StudyError(msg)
    if "text" in study:
        return _string(study, "text", where)
    path = Path(_string(study, "text_file", where))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        msg = f"{where}.text_file: {path} cannot be read ({type(e).__name__})"
        raise StudyError(msg) from None
    if not text.strip():
        msg = f"{where}.text_file: {path} is empty"
        raise StudyError(msg)
    return text


def _version(study: Mapping[str, Any], where: str) -> int:
    value = study.get("version")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{where}.version: must be an integer >= 1"
        raise StudyError(msg)
    return value


def _mode(study: Mapping[str, Any], where: str) -> str:
    value = study.get("mode")
    if value not in MODES:
        msg = f"{where}.mode: must be one of {', '.join(MODES)}"
        raise StudyError(msg)
    return str(value)


def _names(study: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    value = study.get(key, [])
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        msg = f"{where}.{key}: must be a list of names"
        raise StudyError(msg)
    if not all(isinstance(v, str) and v for v in value):
        msg = f"{where}.{key}: every entry must be a non-empty string"
        raise StudyError(msg)
    return frozenset(value)


def _flag(study: Mapping[str, Any], key: str, where: str) -> bool:
    value = study.get(key, False)
    if not isinstance(value, bool):
        msg = f"{where}.{key}: must be true or false"
        raise StudyError(msg)
    return value
