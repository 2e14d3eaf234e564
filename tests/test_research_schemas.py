"""The shipped frontend schemas: every property classified; content and paths only personal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
PERSONAL = "user-identifiable-information"
# Properties that can hold what a user typed or named: never anything but personal.
CONTENT = {"source", "text", "path", "notebook_path", "error_value", "args", "user_agent"}
# The research schemas, that the JupyterLab client posts (not the server's or the hub's own
# records: the audits and the proof of consent).
AUDIT = {"execution", "hub-action", "terminal", "audit-stream", "audit-gap", "consent"}
FILES = sorted(p for p in SCHEMAS.rglob("*.yaml") if p.parent.name not in AUDIT)


def load(path: Path) -> dict[str, Any]:
    """A schema file's document."""
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_property_is_classified_and_content_is_personal(path: Path) -> None:
    """frontend: true, no extra properties, categories on each; content personal only."""
    schema = load(path)
    assert schema["frontend"] is True
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        categories = prop["categories"]
        if name in CONTENT:
            assert categories == [PERSONAL], name
        else:
            assert categories == ["unrestricted"], name


@pytest.mark.parametrize("kind", ["notebook", "cell"])
def test_version_2_keeps_every_property_of_version_1(kind: str) -> None:
    """Version 2 only adds: an admin's rules for version 1 still mean the same."""
    v1, v2 = (load(SCHEMAS / kind / f"v{n}.yaml")["properties"] for n in (1, 2))
    for name, prop in v1.items():
        assert v2[name]["categories"] == prop["categories"]


def test_cell_ids_are_nbformat_ids() -> None:
    """Every cell id property follows nbformat 4.5's id pattern."""
    pattern = "^[a-zA-Z0-9_-]{1,64}$"
    for path in FILES:
        for name, prop in load(path)["properties"].items():
            if name.endswith("cell_id"):
                assert prop["pattern"] == pattern, path
            if name == "cell_ids":
                assert prop["items"]["pattern"] == pattern, path
