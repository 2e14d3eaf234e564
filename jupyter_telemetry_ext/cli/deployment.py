"""What a store command learns from a deployment's config: the user-hash key, the store, its spool.

The config is the collector's or the server's (`--config PATH`, else `jupyter_server_config`
in the config paths), loaded as Jupyter loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from traitlets.config import Config

from jupyter_telemetry_ext.core.errors import SecretFileError
from jupyter_telemetry_ext.core.recorded_user import SECRET_FILE, read_secret

# The sections that hold `user_hash_secret`, the collector's first (it records a hub's users).
SECRET_SECTIONS = ("TelemetryCollector", "TelemetryExtension")


def _section(config: Config, name: str) -> Any:
    section = config.get(name, {})
    return section if hasattr(section, "get") else {}


def configured_secret(config: Config) -> tuple[bytes, str] | None:
    """Return the configured user-hash key and where it was set, or None: a collector's or
    server's `user_hash_secret`, else a hub config's HubEventHandler's (record_user "hashed")."""
    for name in SECRET_SECTIONS:
        value = _section(config, name).get("user_hash_secret", "")
        if isinstance(value, str) and value:
            return value.encode(), f"c.{name}.user_hash_secret"
    handlers = _section(config, "EventLogger").get("handlers", [])
    for handler in handlers if isinstance(handlers, (list, tuple)) else []:
        secret = getattr(handler, "secret", b"")
        if getattr(handler, "record_user", "") == "hashed" and isinstance(secret, bytes) and secret:
            return secret, "the user_hash_secret of c.EventLogger.handlers' HubEventHandler"
    return None


def secret_in(folder: Path) -> tuple[bytes, str] | None:
    """Return the key a server or collector generated in its data dir `folder`, or None.

    Raise SecretFileError when the file is there but empty or readable by others.
    """
    path = folder / SECRET_FILE
    if not path.is_file():
        return None
    return read_secret(path), str(path)


def find_secret(config: Config, secret_file: str, data_dir: str) -> tuple[bytes, str] | None:
    """Return the key of hashed users, and where it was found: `secret_file`, else the config's
    `user_hash_secret`, else the file kept in the data dir; None when there is none."""
    if secret_file:
        path = Path(secret_file)
        if not path.is_file():
            msg = f"{path}: no such key file (--secret-file)"
            raise SecretFileError(msg)
        secret = path.read_bytes().strip()  # the admin's own copy: its mode is theirs
        if not secret:
            msg = f"{path}: the key file is empty (--secret-file)"
            raise SecretFileError(msg)
        return secret, str(path)
    return configured_secret(config) or secret_in(Path(data_dir))


def postgres_handler(config: Config) -> Any:
    """Return the first PostgresEventHandler of the config's `c.EventLog.handlers`, else of a
    hub config's HubEventHandler (`c.EventLogger.handlers`), or None."""
    try:
        from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler
    except ImportError:  # no psycopg: no such handler can be in the config either
        return None
    found = [*_handlers(_section(config, "EventLog").get("handlers", []))]
    for hub_handler in _handlers(_section(config, "EventLogger").get("handlers", [])):
        found += _handlers(getattr(getattr(hub_handler, "eventlog", None), "handlers", []))
    return next((h for h in found if isinstance(h, PostgresEventHandler)), None)


def log_file(config: Config) -> Path | None:
    """Return the file of the first `logging.FileHandler` of the config's `c.EventLog.handlers`,
    else of a hub config's HubEventHandler (`c.EventLogger.handlers`), or None."""
    found = [*_handlers(_section(config, "EventLog").get("handlers", []))]
    for hub_handler in _handlers(_section(config, "EventLogger").get("handlers", [])):
        found += _handlers(getattr(getattr(hub_handler, "eventlog", None), "handlers", []))
    files = (h for h in found if isinstance(h, logging.FileHandler))
    return next((Path(h.baseFilename) for h in files), None)


def _handlers(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def default_spool_dir() -> Path:
    """Return where a PostgresEventHandler spools by default."""
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "telemetry_spool"


@contextmanager
def settings_only() -> Iterator[None]:
    """Load a config whose handlers only tell their settings: its FileHandlers open no file (a
    relative log name would otherwise create an empty log where the command runs, and the
    command read that), its PostgresEventHandlers leave the spools that stopped processes left
    to the deployment's own handlers."""
    with _files_unopened():
        yield from _postgres_settings_only()


@contextmanager
def _files_unopened() -> Iterator[None]:
    """Have each logging.FileHandler made meanwhile open its file at its first write only."""
    init = logging.FileHandler.__init__

    def deferred(  # noqa: PLR0917 (logging.FileHandler's own signature)
        handler: logging.FileHandler,
        filename: Any,
        mode: str = "a",
        encoding: str | None = None,
        delay: bool = False,
        errors: str | None = None,
    ) -> None:
        init(handler, filename, mode, encoding, True, errors)

    setattr(logging.FileHandler, "__init__", deferred)  # noqa: B010 (mypy refuses assigning)
    try:
        yield
    finally:
        setattr(logging.FileHandler, "__init__", init)  # noqa: B010


def _postgres_settings_only() -> Iterator[None]:
    try:
        from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler
    except ImportError:
        yield
        return
    PostgresEventHandler.settings_only = True
    try:
        yield
    finally:
        PostgresEventHandler.settings_only = False
