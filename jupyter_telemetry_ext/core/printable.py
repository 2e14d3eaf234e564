"""Text that came from outside (posted keys, ids, log lines) made safe for a log or a terminal.

A newline in a key name could forge a line of the server's log, and an ESC or OSC sequence in a
recorded value could drive the terminal that prints it. Every control character (C0, DEL, C1)
and every other character Python does not call printable (line and paragraph separators, lone
surrogates, unassigned code points) is written as its escape, as `repr` writes it.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """Return `text` with each non-printable character escaped (`\\n`, `\\x1b`, `\\u2028`)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
