"""The forwarding spool: segments on disk, acknowledged in order, adopted after a stop."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jupyter_telemetry_ext.server.forwarding.spool import ForwardSpool

Make = Callable[..., ForwardSpool]


@pytest.fixture
def make() -> Iterator[Make]:
    """Open spools (closed at the end of the test)."""
    opened: list[ForwardSpool] = []

    def open_spool(folder: Path, segment_bytes: int) -> ForwardSpool:
        opened.append(ForwardSpool(folder, segment_bytes))
        return opened[-1]

    yield open_spool
    for spool in opened:
        spool.close()


def lines(*numbers: int) -> list[bytes]:
    return [b'{"n":%d}' % n for n in numbers]


def drain(spool: ForwardSpool) -> list[bytes]:
    """Take and acknowledge everything, a few events at a time."""
    out: list[bytes] = []
    while (taken := spool.take(3, 1 << 20)) is not None:
        out += taken.lines
        spool.done(taken)
    return out


def test_events_leave_only_when_acknowledged_in_order(make: Make, tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=40)
    spool.append(lines(1, 2, 3))
    spool.append(lines(4, 5))
    taken = spool.take(10, 1 << 20)
    assert taken is not None
    assert spool.take(10, 1 << 20) == taken  # not acknowledged: the same events again
    assert spool.pending == 5
    assert drain(spool) == lines(1, 2, 3, 4, 5)
    assert (spool.pending, spool.size) == (0, 0)
    assert len(list(tmp_path.glob("*.jsonl"))) <= 1  # acknowledged segments are deleted


def test_a_batch_stops_at_the_byte_budget_but_holds_one_event(make: Make, tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=1 << 20)
    spool.append([b'{"big":"' + b"x" * 100 + b'"}', *lines(1, 2)])
    first = spool.take(10, 20)
    assert first is not None
    assert len(first.lines) == 1
    spool.done(first)
    rest = spool.take(10, 20)
    assert rest is not None
    assert rest.lines == lines(1, 2)


def test_a_new_owner_adopts_a_stopped_owner_s_events_only(make: Make, tmp_path: Path) -> None:
    stopped = make(tmp_path, segment_bytes=20)
    stopped.append(lines(1, 2, 3, 4))
    first = stopped.take(1, 1 << 20)
    assert first is not None
    stopped.done(first)  # acknowledged; not noted on disk: it may be sent again (ids dedupe)
    live = make(tmp_path, segment_bytes=20)
    live.append(lines(9))
    assert live.adopted == 0
    stopped.close()
    adopting = make(tmp_path, segment_bytes=20)
    assert adopting.adopted >= 3
    assert drain(adopting)[-3:] == lines(2, 3, 4)
    assert drain(live) == lines(9)


def test_a_line_cut_by_a_crash_is_dropped_on_adoption(make: Make, tmp_path: Path) -> None:
    crashed = make(tmp_path, segment_bytes=1 << 20)
    crashed.append(lines(1, 2))
    crashed.close()
    [segment] = tmp_path.glob("*.jsonl")
    with segment.open("ab") as f:
        f.write(b'{"n":3')
    adopting = make(tmp_path, segment_bytes=1 << 20)
    assert drain(adopting) == lines(1, 2)


def test_dropping_the_oldest_segment_counts_its_events(make: Make, tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=16)
    spool.append(lines(1, 2))
    spool.append(lines(3))
    assert spool.drop_oldest() == 2
    assert drain(spool) == lines(3)


def test_the_spool_is_private(make: Make, tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    spool = make(folder, segment_bytes=1 << 20)
    spool.append(lines(1))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [segment] = folder.glob("*.jsonl")
    assert stat.S_IMODE(segment.stat().st_mode) == 0o600
