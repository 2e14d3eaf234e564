"""`datasheet.md`: what a research dataset holds, for the people who receive it."""

from __future__ import annotations

from typing import Any

INTRO = """# Datasheet: Jupyter telemetry events

Exported on {created} from {source}, as {format} files (one per schema version).
Selection: schema {schema}, received from {since} until {until}. {events} events in all.

## How users are pseudonymised
The `user` column is the {pseudonymised}. Salt: {salt}.
Events of users erased from the store are never exported. Left out of every file:
{always}.

## What is left out
Properties whose privacy categories are not all among: {included}. Events present in two
exports can still be matched by their times and contents (ids of sessions, kernels or messages
among them, the same in every export), and with them the pseudonyms of one person: share each
with care.
"""

CSV_CELLS = """
## Times
`received` and `event_time` are UTC, to the millisecond (`2026-12-07 23:41:42.100`), as
spreadsheets (LibreOffice, Excel) read a date and time.

## Text cells
A text value that a spreadsheet would run as a formula (one starting with `=`, `+`, `-`, `@`,
a tab or a carriage return) starts with a `'` in these CSV files, so opening them runs nothing:
remove that first `'` to read the value as recorded.
"""


def datasheet(manifest: dict[str, Any]) -> str:
    """Return the datasheet of a dataset, from its manifest."""
    selection, users = manifest["selection"], manifest["users"]
    text = INTRO.format(
        created=manifest["created"], source=manifest["source"] or "the event store",
        format=manifest["format"], schema=selection["schema"] or "any",
        since=selection["since"] or "the first", until=selection["until"] or "the last",
        events=manifest["events"], pseudonymised=users["pseudonymised"], salt=users["salt"],
        always="; ".join(manifest["left_out_always"]),
        included=", ".join(manifest["included_categories"]),
    )  # fmt: skip
    text += CSV_CELLS if manifest["format"] == "csv" else ""
    return text + "".join(_file_section(f) for f in manifest["files"])


def _file_section(entry: dict[str, Any]) -> str:
    title = entry["title"] or "schema not found: every property left out"
    lines = [
        f"\n## `{entry['file']}`: {title}\n",
        f"Schema `{entry['schema']}` version {entry['version']}. {entry['description']}\n",
        (
            f"{entry['events']} events of {entry['users']} users, received from "
            f"{entry['first']} to {entry['last']}.\n"
        ),
        "\n| column | type | categories |\n| --- | --- | --- |\n",
    ]
    lines += [f"| `{c['name']}` | {c['type']} | {', '.join(c['categories'])} |\n"
              for c in entry["columns"]]  # fmt: skip
    if entry["left_out"]:
        left = ", ".join(f"`{c['name']}` ({', '.join(c['categories'])})" for c in entry["left_out"])
        lines.append(f"\nLeft out: {left}.\n")
    return "".join(lines)
