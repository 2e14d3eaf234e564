"""The lines typed into a terminal, read from its websocket's stdin keystroke by keystroke.

A line ends at Enter (CR, LF or CRLF). Printable characters are kept; backspace removes the last
one kept; escape sequences (cursor keys, colors, OSC strings, bracketed paste markers) and other
control keys are removed. Keys that make the line the shell runs differ from the characters typed
(cursor movement, history recall, tab completion, readline's control and Meta keys) are not
guessed at: the line is marked with what kind of edit it holds. Text inside a bracketed paste is
text (a tab stays a tab). The reader keeps its state between messages, so that a key split over
two messages is read as one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The most characters of one line kept in memory (its hash covers them); longer lines are counted.
KEEP_LIMIT = 1 << 20
# An escape string (OSC, DCS ...) longer than this is no terminal reply: its rest is read as text.
STRING_LIMIT = 512
SEQUENCE_LIMIT = 32  # parameter characters of one CSI sequence
# Control characters of one message read one by one; the rest of the message is read in bulk,
# so that no message (up to the websocket's 10 MiB) holds the event loop for long.
SPECIAL_LIMIT = 4096
# Lines of one message's bulk recorded one by one; the rest are recorded as one line, joined.
BULK_LINES = 1000

CURSOR, HISTORY, COMPLETION, CONTROL = "cursor", "history", "completion", "control"
_SPECIAL = re.compile("[\x00-\x1f\x7f]")
_ENTER = re.compile("\r\n?|\n")
_CONTROLS = re.compile("[\x00-\x1a\x1c-\x1f\x7f]+")  # every control character but ESC
_SEQUENCES = re.compile(
    "\x1b(?:\\[[\x20-\x3f]*[\x40-\x7e]?|[\\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\\\)?|.)?"
)
_TEXT, _ESC, _CSI, _SS3, _STRING, _STRING_ESC = range(6)
_CONTROL_KEYS = {
    "\x01": CURSOR, "\x02": CURSOR, "\x05": CURSOR, "\x06": CURSOR,  # ^A ^B ^E ^F
    "\x10": HISTORY, "\x0e": HISTORY, "\x12": HISTORY, "\x13": HISTORY,  # ^P ^N ^R ^S
    "\t": COMPLETION,
}  # fmt: skip
_CSI_FINAL = {"A": HISTORY, "B": HISTORY, "C": CURSOR, "D": CURSOR, "H": CURSOR, "F": CURSOR,
              "Z": COMPLETION}  # fmt: skip
_CSI_TILDE = {"1": CURSOR, "3": CURSOR, "4": CURSOR, "7": CURSOR, "8": CURSOR,
              "5": HISTORY, "6": HISTORY}  # fmt: skip
PASTE_START, PASTE_END = "200", "201"
PASTE_ON, PASTE_OFF = f"\x1b[{PASTE_START}~", f"\x1b[{PASTE_END}~"  # the bracketed paste markers
_NO_LINES: tuple[Line, ...] = ()


@dataclass(frozen=True)
class Line:
    """One line entered: its text, how many characters it had, and what may make it differ."""

    text: str
    length: int  # characters entered (more than len(text) when over KEEP_LIMIT)
    edits: frozenset[str]  # CURSOR, HISTORY, COMPLETION, CONTROL: keys the text does not show
    pasted: bool  # some of it came in a bracketed paste


class LineReader:
    """Reads a terminal's stdin messages into the lines entered."""

    def __init__(self, keep: int = KEEP_LIMIT) -> None:
        """Keep at most `keep` characters of a line (the rest is counted)."""
        self.keep = keep
        self._parts: list[str] = []
        self._kept = self._length = 0
        self._edits: set[str] = set()
        self._pasted = self._in_paste = self._after_cr = False
        self._state = _TEXT
        self._sequence: list[str] = []
        self._string_size = 0

    def feed(self, data: str) -> tuple[Line, ...]:
        """Read one stdin message; return the lines it completed (usually none)."""
        if self._state == _TEXT and _SPECIAL.search(data) is None:
            self._after_cr = False
            self._add(data)  # a printable keystroke: the common case, kept cheap
            return _NO_LINES
        lines: list[Line] = []
        start = 0
        for count, match in enumerate(_SPECIAL.finditer(data)):
            if count == SPECIAL_LIMIT:
                lines += self._bulk(data[start:])
                return tuple(lines)
            if match.start() > start:
                self._text(data[start : match.start()])
            line = self._special(match.group())
            if line is not None:
                lines.append(line)
            start = match.end()
        if start < len(data):
            self._text(data[start:])
        return tuple(lines)

    def _bulk(self, data: str) -> list[Line]:
        """Read the rest of a message that holds too many control keys to read one by one.

        Its lines are split at Enter; keys and sequences are removed without being applied,
        and a line that held any is marked as holding control keys.
        """
        self._state = _TEXT
        pieces = _ENTER.split(data)
        if len(pieces) > BULK_LINES + 1:  # one event for the many lines of a huge paste
            pieces[BULK_LINES : len(pieces) - 1] = ["\n".join(pieces[BULK_LINES:-1])]
        lines = []
        for piece in pieces[:-1]:
            self._add_bulk(piece)
            line = self._end()
            if line is not None:
                lines.append(line)
        self._add_bulk(pieces[-1])
        self._after_cr = data.endswith("\r")
        return lines

    def _add_bulk(self, piece: str) -> None:
        """Add a piece of a line read in bulk: paste markers followed, keys removed."""
        starts, ends = piece.rfind(PASTE_ON), piece.rfind(PASTE_OFF)
        if starts >= 0:
            self._pasted = True
        if starts != ends:
            self._in_paste = starts > ends
        text = _removed(piece)
        if len(text) != len(piece.replace(PASTE_ON, "").replace(PASTE_OFF, "")):
            self._edits.add(CONTROL)
        self._add(text)

    def _text(self, text: str) -> None:
        """Read printable characters, in whatever state the reader is."""
        if self._state == _TEXT:
            self._after_cr = False
            self._add(text)
            return
        for index, char in enumerate(text):
            self._sequence_char(char)
            if self._state == _TEXT:
                self._text(text[index + 1 :])
                return

    def _special(self, char: str) -> Line | None:
        """Read one control character; return the line it ends, if it ends one."""
        if char in "\r\n":  # Enter ends a line whatever sequence was open
            self._state = _TEXT
            if char == "\n" and self._after_cr:
                self._after_cr = False
                return None
            self._after_cr = char == "\r"
            return self._end()
        self._after_cr = False
        if char == "\x1b":
            if self._state in (_STRING, _STRING_ESC):
                self._state = _STRING_ESC
            else:
                self._state = _ESC
        elif self._state in (_STRING, _STRING_ESC):
            if char == "\x07":
                self._state = _TEXT
        elif self._state != _TEXT:  # a control key inside a key sequence: the sequence is over
            self._state = _TEXT
            self._edits.add(CONTROL)
            return self._special(char)
        else:
            self._control(char)
        return None

    def _control(self, char: str) -> None:
        """Apply one control key typed outside any sequence."""
        if char in "\x7f\x08":
            self._backspace()
        elif char == "\x03":  # ^C: the shell abandons the line
            self._reset()
        elif char == "\t" and self._in_paste:
            self._add(char)
        else:
            self._edits.add(_CONTROL_KEYS.get(char, CONTROL))

    def _sequence_char(self, char: str) -> None:
        """Read one printable character of an escape sequence."""
        state = self._state
        if state == _ESC:
            self._escaped(char)
        elif state == _SS3:
            self._state = _TEXT
            self._edits.add(HISTORY if char in "AB" else CURSOR if char in "CDHF" else CONTROL)
        elif state == _CSI:
            self._csi(char)
        else:  # in a string (OSC, DCS ...): ESC \ ends it; a string that goes on is no reply
            self._string_size += 1
            ended = state == _STRING_ESC and char == "\\"
            if ended or self._string_size > STRING_LIMIT:
                self._state = _TEXT
            else:
                self._state = _STRING

    def _escaped(self, char: str) -> None:
        """Read the character after ESC."""
        if char == "[":
            self._state, self._sequence = _CSI, []
        elif char == "O":
            self._state = _SS3
        elif char in "]PX^_":
            self._state, self._string_size = _STRING, 0
            self._edits.add(CONTROL)  # typed strings reach readline as Meta keys and text
        else:  # a Meta key (Alt+b moves a word back, Alt+. recalls an argument ...)
            self._state = _TEXT
            self._edits.add(CONTROL)

    def _csi(self, char: str) -> None:
        """Read one character of a CSI sequence (ESC [ parameters final)."""
        if "\x20" <= char <= "\x3f":
            if len(self._sequence) < SEQUENCE_LIMIT:
                self._sequence.append(char)
            return
        self._state = _TEXT
        parameters = "".join(self._sequence)
        if char == "~":
            self._tilde(parameters)
        else:  # colors too: readline reads any sequence as keys, not as text
            self._edits.add(_CSI_FINAL.get(char, CONTROL))

    def _tilde(self, parameters: str) -> None:
        """Read a CSI sequence ending in `~`: paste markers and editing keys."""
        if parameters == PASTE_START:
            self._in_paste = self._pasted = True
        elif parameters == PASTE_END:
            self._in_paste = False
        else:
            self._edits.add(_CSI_TILDE.get(parameters.partition(";")[0], CONTROL))

    def _add(self, text: str) -> None:
        self._length += len(text)
        room = self.keep - self._kept
        if room > 0:
            kept = text[:room]
            self._parts.append(kept)
            self._kept += len(kept)

    def _backspace(self) -> None:
        if self._length > self._kept:
            self._length -= 1
            return
        if not self._parts:
            return
        last = self._parts.pop()
        if len(last) > 1:
            self._parts.append(last[:-1])
        self._kept -= 1
        self._length -= 1

    def _end(self) -> Line | None:
        """End the current line; return it unless nothing was typed."""
        if not self._parts and not self._edits and not self._length:
            self._pasted = False
            return None
        line = Line("".join(self._parts), self._length, frozenset(self._edits), self._pasted)
        self._reset()
        return line

    def _reset(self) -> None:
        self._parts = []
        self._kept = self._length = 0
        self._edits = set()
        self._pasted = self._in_paste  # a paste that goes on marks the next line too


def _removed(text: str) -> str:
    """Return `text` without its control characters and escape sequences (newlines kept)."""
    if "\n" in text:
        return "\n".join(_removed(part) for part in text.split("\n"))
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))  # sequences first: BEL ends an OSC
