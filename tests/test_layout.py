"""The package's layout: where each kind of thing lives, and what each part imports."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import json
import pkgutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pytest

import jupyter_telemetry_ext
from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core import errors
from jupyter_telemetry_ext.core.outcomes import OUTCOMES, REPLY_OUTCOMES
from jupyter_telemetry_ext.server.metrics import TelemetryCollector
from jupyter_telemetry_ext.server.ratelimit import RateLimiter
from jupyter_telemetry_ext.server.reception import Policy

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jupyter_telemetry_ext"

# Exceptions that subclass a jsonschema class, defined beside the code that imports jsonschema
# (slow to import): the validation error (found in `errors` too, imported on first use), and the
# jsonschema-compatible class that `errors.EventSchemaError` builds once jsonschema is loaded.
JSONSCHEMA_ERRORS = {
    ("jupyter_telemetry_ext.core.validation", "EventValidationError"),
    ("jupyter_telemetry_ext.core.jsonschema_compat", "EventSchemaError"),
}


def package_modules() -> list[ModuleType]:
    """Return every module of the package that imports here (optional extras may be missing)."""
    modules = []
    for info in pkgutil.walk_packages(jupyter_telemetry_ext.__path__, "jupyter_telemetry_ext."):
        if info.name.endswith("__main__"):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:  # pragma: no cover - an optional extra is not installed
            continue
    return modules


def test_every_exception_class_is_defined_in_errors() -> None:
    defined = {
        (module.__name__, name)
        for module in package_modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    }
    elsewhere = {
        (module, name) for module, name in defined if module != "jupyter_telemetry_ext.core.errors"
    }
    assert elsewhere == JSONSCHEMA_ERRORS
    assert len(defined) >= 17
    assert errors.EventValidationError.__module__ == "jupyter_telemetry_ext.core.validation"


def test_queue_full_error_is_exported() -> None:
    from jupyter_telemetry_ext import QueueFullError

    assert QueueFullError is errors.QueueFullError
    assert "QueueFullError" in jupyter_telemetry_ext.__all__


def imports_of(module: str) -> set[str]:
    """Return the package's modules (`group.name`) that `module` (`group.name`) imports itself,
    as read from its source, lazy imports included."""
    group = module.rpartition(".")[0]
    tree = ast.parse((PACKAGE / f"{module.replace('.', '/')}.py").read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1:
            base = f"{group}.{node.module}" if node.module else group
        elif node.level == 0 and (node.module or "").startswith("jupyter_telemetry_ext."):
            base = (node.module or "").removeprefix("jupyter_telemetry_ext.")
        else:
            continue
        names = [f"{base}.{alias.name}" for alias in node.names]
        found |= {
            name for name in [base, *names] if (PACKAGE / f"{name.replace('.', '/')}.py").is_file()
        }
    return found


def imported_by(module: str) -> set[str]:
    """Return the package's modules that `module` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports_of(name))
    return seen


def test_parsing_a_post_imports_no_eventlog() -> None:
    imported = imported_by("server.wire")
    assert {"server.strictjson", "core.timestamps", "core.errors"} <= imported
    assert not imported & {"core.eventlog", "server.ingest", "core.delivery", "server.reception"}


GROUPS = ("core", "server", "hub", "sinks", "cli", "analysis", "dashboard", "compat")


def test_every_module_is_in_one_group() -> None:
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == {"__init__", "_version"}
    grouped = {path.parent.name for path in PACKAGE.glob("*/*.py")} - {"labextension"}
    assert grouped == set(GROUPS)


def test_the_library_imports_nothing_of_the_server_the_hub_the_sinks_or_the_cli() -> None:
    library = [f"core.{path.stem}" for path in (PACKAGE / "core").glob("*.py")]
    assert len(library) > 20
    for module in library:
        outside = {
            name for name in imports_of(module) if not name.startswith(("core.", "_version"))
        }
        assert not outside, f"{module} imports {sorted(outside)}"


def test_the_compatibility_modules_are_the_library_only() -> None:
    for module in group_modules("compat"):
        outside = {name for name in imports_of(module) if not name.startswith(("core.", "compat."))}
        assert not outside, f"{module} imports {sorted(outside)}"


def group_modules(group: str) -> list[str]:
    """Return the modules (`group.name`, subpackages included) of one group."""
    folder = PACKAGE / group
    return [
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts) for path in folder.rglob("*.py")
    ]


@pytest.mark.parametrize(
    ("group", "forbidden"),
    [
        ("server", "hub."),
        ("hub", "cli."),
        ("sinks", "cli."),
        ("analysis", "cli."),
        ("analysis", "server."),
        ("dashboard", "cli."),
    ],
)
def test_each_piece_imports_nothing_of_the_process_above_it(group: str, forbidden: str) -> None:
    modules = group_modules(group)
    assert modules
    for module in modules:
        outside = {name for name in imports_of(module) if name.startswith(forbidden)}
        assert not outside, f"{module} imports {sorted(outside)}"


def test_forwarding_runs_in_the_server() -> None:
    assert {"server.forwarding.spool", "server.forwarding.uplink"} <= set(group_modules("server"))
    assert not [name for name in group_modules("hub") if "forward" in name or "uplink" in name]


def test_public_imports_stay_at_the_top() -> None:
    import jupyter_telemetry_ext as package

    for name in package.__all__:
        if name != "PostgresEventHandler" or importlib.util.find_spec("psycopg"):
            assert getattr(package, name) is not None
    assert package.HubEventHandler.__module__ == "jupyter_telemetry_ext.hub.events"


def test_a_reception_is_built_whole() -> None:
    policy = Policy(limiter=RateLimiter(0, 0))
    received = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sent = received - timedelta(seconds=3)
    reception = policy.reception("ada", "user:ada", received, sent_at=sent, open_to=bool)
    assert (reception.sent_at, reception.open_to) == (sent, bool)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reception.sent_at = None  # type: ignore[misc]


def test_handlers_are_sinks_and_routes_are_routes() -> None:
    from jupyter_telemetry_ext.server.routes import default_handlers

    assert [pattern for pattern, _ in default_handlers] == [
        "/api/telemetry/events",
        "/api/telemetry/schemas",
        "/api/telemetry/schemas/(?P<schema_id>.+)",
        "/api/telemetry/subscribe",
    ]
    assert importlib.util.find_spec("jupyter_telemetry_ext.handlers") is None


def test_one_set_of_outcomes() -> None:
    assert set(OUTCOMES) == {
        "recorded", "filtered", "rejected", "duplicate", "rate_limited", "sink_failure",
        "queue_full", "sampled_out", "erased", "no_consent",
    }  # fmt: skip
    assert len(OUTCOMES) == len(set(OUTCOMES))
    assert set(REPLY_OUTCOMES) <= set(OUTCOMES)


def test_the_metric_names_every_outcome() -> None:
    events = next(iter(TelemetryCollector(EventLog()).collect()))
    assert all(outcome in events.documentation for outcome in OUTCOMES)


def test_settings_schemas_are_not_in_a_folder_named_like_the_event_schemas() -> None:
    package = json.loads((ROOT / "package.json").read_text("utf-8"))
    folder = package["jupyterlab"]["schemaDir"]
    assert folder == "settings-schema"
    assert (ROOT / folder / "plugin.json").is_file()
    assert f"{folder}/*.json" in package["files"]
    assert not (ROOT / "schema").exists()
