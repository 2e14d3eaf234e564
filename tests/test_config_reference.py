"""The configuration reference the docs build generates lists every option of every configurable."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from traitlets.config import Configurable

import jupyter_telemetry_ext

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import config_reference  # noqa: E402 - tools/ is not a package


def package_configurables() -> set[type[Configurable]]:
    """Return every class of the package that has options of its own."""
    for module in pkgutil.walk_packages(jupyter_telemetry_ext.__path__, "jupyter_telemetry_ext."):
        importlib.import_module(module.name)
    found, todo = set(), [Configurable]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("jupyter_telemetry_ext") and cls.class_own_traits(config=True):
            found.add(cls)
    return found


def command_line_options() -> set[tuple[str, str]]:
    """Return the (class name, trait) pairs that a subcommand's alias or flag sets."""
    options = set()
    for command in config_reference.subcommands().values():
        for target in command.aliases.values():
            owner, _, name = (target[0] if isinstance(target, tuple) else target).rpartition(".")
            options.add((owner, name))
        for config, _ in command.flags.values():
            options |= {(owner, name) for owner, traits in config.items() for name in traits}
    return options


def test_every_option_is_in_a_reference() -> None:
    in_config = set(config_reference.configurables())
    on_command_line = command_line_options()
    for cls in package_configurables() - in_config:
        for name in cls.class_own_traits(config=True):
            assert (cls.__name__, name) in on_command_line, f"{cls.__name__}.{name} is undocumented"


def test_config_reference_lists_every_option() -> None:
    text = config_reference.config_reference()
    for cls in config_reference.configurables():
        for name in cls.class_own_traits(config=True):
            assert f"```{{confval}} c.{cls.__name__}.{name}\n" in text


def test_cli_reference_lists_every_option() -> None:
    text = config_reference.cli_reference()
    for name, command in config_reference.subcommands().items():
        assert f"### `jupyter telemetry {name}`" in text
        for alias, target in command.aliases.items():
            owner = target.split(".")[0]
            if any(c.__name__ == owner for c in command.mro() if "telemetry" in c.__module__):
                assert f"- `--{alias}` " in text


def test_placeholders_expand_to_the_references() -> None:
    source = ["# Configuration\n\n```{config-reference}\n```\n\n```{cli-reference}\n```\n"]
    config_reference._expand(None, "configuration", source)
    assert "```{confval} c.EventLog.allowed_schemas\n" in source[0]
    assert "### `jupyter telemetry collect`" in source[0]
    assert "{config-reference}" not in source[0]
    assert "{cli-reference}" not in source[0]


def test_every_option_has_help() -> None:
    for cls in config_reference.configurables():
        for name, trait in cls.class_own_traits(config=True).items():
            assert len((trait.help or "").split()) >= 8, f"{cls.__name__}.{name} needs help text"
