"""A config file that failed to run, said in one line: the file, the line and the error."""

from __future__ import annotations

import itertools
import traceback

# traitlets runs a Python config file from this function: the next frame is the file's own.
_RUNS_CONFIG = "_read_file_as_dict"


def config_failure(error: BaseException) -> str:
    """Return `<file>, line <n>: <Error>: <message>` for an error raised by a config file."""
    frames = traceback.extract_tb(error.__traceback__)
    where = ""
    for caller, frame in itertools.pairwise(frames):
        if caller.name == _RUNS_CONFIG:
            where = f"{frame.filename}, line {frame.lineno}: "
    message = str(error).strip()
    kind = type(error).__name__
    return f"{where}{kind}: {message}" if message else f"{where}{kind}"
