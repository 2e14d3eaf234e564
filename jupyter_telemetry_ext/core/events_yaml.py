"""YAML reading and writing with the helpers' names jupyter_events' users call (`loads`, `dump`)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any

import yaml

from .schema import load_document


def loads(stream: str | bytes | IO[str] | IO[bytes]) -> Any:
    """Return the document in YAML text or an open file (no aliases: see `schema`)."""
    if isinstance(stream, bytes):
        stream = stream.decode("utf-8")
    return load_document(io.StringIO(stream) if isinstance(stream, str) else stream)[0]


def load(path: str | os.PathLike[str]) -> Any:
    """Return the document of a YAML (or JSON) file."""
    return load_document(Path(path))[0]


def dumps(data: Any) -> str:
    """Return a document as YAML text."""
    return yaml.safe_dump(data)


def dump(data: Any, path: str | os.PathLike[str]) -> None:
    """Write a document to a YAML file."""
    Path(path).write_text(dumps(data), encoding="utf-8")
