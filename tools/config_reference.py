"""The configuration reference and the command-line options, generated from the traits' help.

The docs build loads this module as a Sphinx extension (docs/conf.py): a page's
```` ```{config-reference} ```` block becomes every option of `configurables()`, and
```` ```{cli-reference} ```` every option of the `jupyter telemetry` subcommands, as MyST
Markdown parsed with the page. So the reference is never stale: edit the traits' help, not it.

python tools/config_reference.py          # print the configuration reference
python tools/config_reference.py --cli    # print the command-line options
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from traitlets import TraitType
from traitlets.config import Application, Configurable
from traitlets.utils.importstring import import_item

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "jupyter_telemetry_ext"
PLACEHOLDER = re.compile(r"^```\{(config-reference|cli-reference)\}\n```\n", re.MULTILINE)


def subcommands() -> dict[str, type[Application]]:
    """Return the `jupyter telemetry` subcommands by name, their classes imported."""
    from jupyter_telemetry_ext.cli.main import TelemetryApp

    found: dict[str, type[Application]] = {}
    for name, (spec, _) in TelemetryApp.subcommands.items():
        cls = import_item(spec) if isinstance(spec, str) else spec
        found[name] = cls
        nested = cls.subcommands  # a class's own dict, e.g. `audit check` (else the trait)
        for sub, (spec_of_sub, _) in (nested if isinstance(nested, dict) else {}).items():
            is_name = isinstance(spec_of_sub, str)
            found[f"{name} {sub}"] = import_item(spec_of_sub) if is_name else spec_of_sub
    return found


def configurables() -> list[type[Configurable]]:
    """Return the classes set in config files: the library (and its drop-in for jupyter_events
    users), the extension, the collector."""
    from jupyter_telemetry_ext import EventLog, EventLogger, _jupyter_server_extension_points

    extension = _jupyter_server_extension_points()[0]["app"]
    return [EventLog, EventLogger, extension, subcommands()["collect"]]


def _text(help_text: str | None) -> str:
    return " ".join(inspect.cleandoc(help_text or "").split())


def _default(trait: TraitType[Any, Any]) -> str:
    text = trait.default_value_repr()
    return text if len(text) <= 60 else text[:57] + "..."


def _confval(name: str, trait: TraitType[Any, Any]) -> str:
    kind, default = type(trait).__name__, _default(trait).replace("`", "'")
    head = f"```{{confval}} {name}\n:type: {kind}\n:default: `` {default} ``"
    return f"{head}\n\n{_text(trait.help)}\n```"


def config_reference() -> str:
    """Return every configurable option as MyST Markdown, a section per class."""
    parts = []
    for cls in configurables():
        own = cls.class_own_traits(config=True)
        options = [_confval(f"c.{cls.__name__}.{name}", own[name]) for name in sorted(own)]
        parts.append(f"## `{cls.__name__}`\n\n" + "\n\n".join(options))
    return "\n\n".join(parts) + "\n"


def _ours(cls: type[Configurable]) -> list[type[Configurable]]:
    """Return `cls` and its ancestors that this package defines."""
    return [c for c in cls.mro() if c.__module__.startswith(PACKAGE)]


def _alias_trait(cls: type[Application], target: str) -> TraitType[Any, Any] | None:
    owner, _, name = target.rpartition(".")
    for c in _ours(cls):
        if c.__name__ == owner:
            trait: TraitType[Any, Any] | None = c.class_own_traits(config=True).get(name)
            return trait
    return None


def _options(cls: type[Application]) -> list[str]:
    lines = []
    for alias, spec in sorted(cls.aliases.items()):
        target = spec[0] if isinstance(spec, tuple) else spec
        trait = _alias_trait(cls, target)
        if trait is not None and isinstance(alias, str):
            default = _default(trait).replace("`", "'")
            lines.append(f"- `--{alias}` (default `` {default} ``): {_text(trait.help)}")
    ours = {c.__name__ for c in _ours(cls)}
    for flag, (config, help_text) in sorted(cls.flags.items()):
        if isinstance(flag, str) and ours & set(config):
            lines.append(f"- `--{flag}`: {_text(help_text)}")
    return lines


def cli_reference() -> str:
    """Return each `jupyter telemetry` subcommand's description and options as MyST Markdown."""
    parts = []
    for name, cls in subcommands().items():
        options = _options(cls) or ["- no options of its own"]
        head = f"### `jupyter telemetry {name}`\n\n{_text(cls.description)}\n\n"
        parts.append(head + "\n".join(options))
    return "\n\n".join(parts) + "\n"


def _expand(_app: object, _docname: str, source: list[str]) -> None:
    generate = {"config-reference": config_reference, "cli-reference": cli_reference}
    source[0] = PLACEHOLDER.sub(lambda m: generate[m[1]](), source[0])


def setup(app: Any) -> dict[str, Any]:
    """Register the Sphinx extension: expand the placeholders as each page is read."""
    app.connect("source-read", _expand)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main() -> int:
    """Print the configuration reference, or the command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cli", action="store_true", help="print the command-line options")
    args = parser.parse_args()
    sys.stdout.write(cli_reference() if args.cli else config_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
