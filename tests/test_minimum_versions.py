"""The lower bounds pyproject.toml declares are the versions .ci/run tests at its minimum run."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / ".ci" / "minimum-constraints.txt"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lower_bounds() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    bounds = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement)
        assert match, f"{requirement}: every dependency declares its lower bound, and only it"
        bounds[normalized(match[1])] = match[2]
    return bounds


def pins() -> dict[str, str]:
    lines = CONSTRAINTS.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {normalized(name): version for name, version in pairs}


def release(version: str) -> tuple[int, ...]:
    """Return the release as numbers without trailing zeros: 2.10 and 2.10.0 are one."""
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def test_every_lower_bound_is_the_version_the_minimum_run_installs() -> None:
    bounds, pinned = lower_bounds(), pins()
    assert bounds.keys() <= pinned.keys()
    assert {name: release(pinned[name]) for name in bounds} == {
        name: release(version) for name, version in bounds.items()
    }
