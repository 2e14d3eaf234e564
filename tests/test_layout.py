"""The package's layout: where each kind of thing lives, and what each part imports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import jupyter_telemetry_ext
from jupyter_telemetry_ext import errors

# Exceptions that subclass a jsonschema class, defined beside the code that imports jsonschema
# (slow to import): the validation error (found in `errors` too, imported on first use), and the
# jsonschema-compatible class that `errors.EventSchemaError` builds once jsonschema is loaded.
JSONSCHEMA_ERRORS = {
    ("jupyter_telemetry_ext.validation", "EventValidationError"),
    ("jupyter_telemetry_ext.jsonschema_compat", "EventSchemaError"),
}


def package_modules() -> list[ModuleType]:
    """Return every module of the package that imports here (optional extras may be missing)."""
    modules = []
    for info in pkgutil.iter_modules(jupyter_telemetry_ext.__path__):
        try:
            modules.append(importlib.import_module(f"jupyter_telemetry_ext.{info.name}"))
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
        (module, name) for module, name in defined if module != "jupyter_telemetry_ext.errors"
    }
    assert elsewhere == JSONSCHEMA_ERRORS
    assert len(defined) >= 17
    assert errors.EventValidationError.__module__ == "jupyter_telemetry_ext.validation"


def test_queue_full_error_is_exported() -> None:
    from jupyter_telemetry_ext import QueueFullError

    assert QueueFullError is errors.QueueFullError
    assert "QueueFullError" in jupyter_telemetry_ext.__all__


def imported_by(module: str) -> set[str]:
    """Return the package's modules that importing `module` loads, in a fresh interpreter."""
    code = (
        f"import sys, {module}; "
        "print(' '.join(m for m in sys.modules if m.startswith('jupyter_telemetry_ext')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())
