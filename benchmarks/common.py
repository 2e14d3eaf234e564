"""Shared pieces of the benchmarks: the event schema, a sample event and timing statistics."""

from __future__ import annotations

import json
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA_ID = "https://events.example.org/bench/notebook-cell"
SCHEMA_VERSION = "1"

SCHEMA: dict[str, Any] = {
    "$id": SCHEMA_ID,
    "version": SCHEMA_VERSION,
    "title": "Notebook cell activity",
    "description": "A cell was executed, interrupted or deleted in a notebook.",
    "type": "object",
    "required": ["action", "user", "cell", "kernel"],
    "additionalProperties": False,
    "properties": {
        "action": {
            "title": "Action",
            "description": "What happened to the cell.",
            "type": "string",
            "enum": ["execute", "interrupt", "delete", "move"],
            "categories": ["unrestricted"],
        },
        "user": {
            "title": "User",
            "description": "Who did it.",
            "type": "string",
            "categories": ["user-identifier"],
        },
        "session_id": {
            "title": "Session",
            "description": "An opaque session id.",
            "type": "string",
            "categories": ["unrestricted"],
        },
        "cell": {
            "title": "Cell",
            "description": "The cell and its execution.",
            "type": "object",
            "categories": ["unrestricted"],
            "properties": {
                "index": {"type": "integer", "minimum": 0},
                "cell_type": {"type": "string", "enum": ["code", "markdown", "raw"]},
                "execution_count": {"type": ["integer", "null"]},
                "duration_ms": {"type": "number", "minimum": 0},
            },
            "required": ["index", "cell_type"],
        },
        "kernel": {
            "title": "Kernel",
            "description": "The kernel that ran the cell.",
            "type": "object",
            "categories": ["unrestricted"],
            "properties": {
                "name": {"type": "string"},
                "language": {"type": "string"},
            },
        },
        "tags": {
            "title": "Tags",
            "description": "The cell's tags.",
            "type": "array",
            "categories": ["unrestricted"],
            "items": {"type": "string"},
            "maxItems": 16,
        },
    },
}

EVENT: dict[str, Any] = {
    "action": "execute",
    "user": "alice@example.org",
    "session_id": "6f1c2a9e-2d1b-4c0e-9a57-3a8f0f6b9e21",
    "cell": {"index": 12, "cell_type": "code", "execution_count": 41, "duration_ms": 183.5},
    "kernel": {"name": "python3", "language": "python"},
    "tags": ["parameters", "slow"],
}

# Records `execute` and `interrupt` events with their unrestricted properties: `user`
# (a user-identifier) is redacted to null.
REDACTED_PROPERTY = "user"
ALLOWED_ACTIONS = ("execute", "interrupt")
ALLOWED_SCHEMAS: dict[str, Any] = {SCHEMA_ID: {"allowed_actions": list(ALLOWED_ACTIONS)}}
FILTERED_EVENT: dict[str, Any] = {**EVENT, "action": "delete"}


@dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements of one quantity."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Summarise the samples (at least one)."""
        ordered = sorted(samples)
        if len(ordered) >= 2:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1 = q3 = ordered[0]
        return cls(statistics.median(ordered), q1, q3, ordered[0], ordered[-1], tuple(ordered))

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as plain JSON values."""
        return {
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "min": self.low,
            "max": self.high,
            "samples": list(self.samples),
        }


def environment() -> dict[str, str]:
    """Describe the machine and interpreter the figures come from."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": platform.system(),
    }


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a plain-text table with the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(cell).rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def dumps_json(value: Any) -> str:
    """Return the machine-readable report."""
    return json.dumps(value, indent=2, sort_keys=False)
