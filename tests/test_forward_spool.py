"""The forwarding spool: segments on disk, acknowledged in order, adopted after a stop by a
server of the same user only."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jupyter_telemetry_ext.core.errors import SpoolFolderError
from jupyter_telemetry_ext.server.forwarding.spool import (
    NOT_A_FILE,
    OTHER_KEY,
    OTHER_STAMP,
    OTHER_UID,
    UNSTAMPED,
    ForwardSpool,
    SpoolIdentity,
)
from tests.test_sinks import small_disk  # noqa: F401 - the 64 KiB tmpfs fixture

ALICE = SpoolIdentity("alice", "", os.getuid())
BOB = SpoolIdentity("bob", "", os.getuid())

Make = Callable[..., ForwardSpool]


@pytest.fixture
def make() -> Iterator[Make]:
    """Open spools (closed at the end of the test)."""
    opened: list[ForwardSpool] = []

    def open_spool(
        folder: Path, segment_bytes: int = 1 << 20, identity: SpoolIdentity = ALICE
    ) -> ForwardSpool:
        opened.append(ForwardSpool(folder, segment_bytes, identity=identity))
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
    stopped.done(first)  # acknowledged: never sent again
    live = make(tmp_path, segment_bytes=20)
    live.append(lines(9))
    assert live.adopted == 0
    stopped.close()
    adopting = make(tmp_path, segment_bytes=20)
    assert adopting.adopted == 3
    assert drain(adopting) == lines(2, 3, 4)
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


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def events_on_disk(folder: Path) -> list[bytes]:
    """Return the event lines of every segment in `folder` (stamps skipped)."""
    found = []
    for path in segments(folder):
        found += [x for x in path.read_bytes().splitlines() if b'"__spool__"' not in x]
    return found


def leftover(make: Make, folder: Path, identity: SpoolIdentity, *numbers: int) -> Path:
    """Leave the segment of a stopped server of `identity` in `folder`; return its path."""
    stopped = make(folder, identity=identity)
    stopped.append(lines(*numbers))
    stopped.close()
    [path] = folder.glob(f"{stopped.owner}.*.jsonl")
    return path


def as_alice_s(path: Path) -> Path:
    """Rename a stopped server's segment (and its lock) as if alice's server had written it."""
    owner = ".".join(path.name.split(".")[:2])
    lock = path.with_name(owner + ".lock")
    alias = owner.replace(BOB.key, ALICE.key, 1)
    lock.rename(lock.with_name(alias + ".lock"))
    return path.rename(path.with_name(path.name.replace(owner, alias, 1)))


def test_each_segment_is_stamped_with_its_user_server_and_uid(make: Make, tmp_path: Path) -> None:
    spool = make(tmp_path, identity=SpoolIdentity("alice.smith@uni", "gpu", os.getuid()))
    spool.append(lines(1))
    [path] = segments(tmp_path)
    assert path.name.startswith("alice%2Esmith%40uni@gpu.")
    stamp = json.loads(path.read_bytes().splitlines()[0])
    assert stamp["__spool__"] == 1
    assert (stamp["user"], stamp["server_name"], stamp["uid"]) == ("alice.smith@uni", "gpu",
                                                                   os.getuid())  # fmt: skip
    assert drain(spool) == lines(1)  # the stamp is never sent


def test_a_long_user_name_makes_a_short_file_name(make: Make, tmp_path: Path) -> None:
    long = SpoolIdentity("ü" * 200, "", os.getuid())
    stopped = make(tmp_path, identity=long)
    stopped.append(lines(1))
    stopped.close()
    [path] = segments(tmp_path)
    assert len(path.name) < 160
    similar = make(tmp_path, identity=SpoolIdentity("ü" * 199, "", os.getuid()))
    assert (similar.adopted, similar.left_alone) == (0, {OTHER_KEY: 1})
    assert drain(make(tmp_path, identity=long)) == lines(1)


def test_adopted_segments_keep_their_order(make: Make, tmp_path: Path) -> None:
    stopped = make(tmp_path, segment_bytes=16)
    for n in range(1, 6):
        stopped.append(lines(n))
    taken = stopped.take(1, 1 << 20)
    assert taken is not None
    stopped.done(taken)
    stopped.close()
    assert drain(make(tmp_path)) == lines(2, 3, 4, 5)


def test_the_identity_comes_from_the_hub_else_the_os_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "gpu")
    assert SpoolIdentity.of_process() == SpoolIdentity("alice", "gpu", os.getuid())
    monkeypatch.delenv("JUPYTERHUB_USER")
    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME")
    import pwd

    os_user = pwd.getpwuid(os.getuid()).pw_name
    assert SpoolIdentity.of_process() == SpoolIdentity(os_user, "", os.getuid())


def test_another_user_s_leftover_is_not_adopted(make: Make, tmp_path: Path) -> None:
    bob_s = leftover(make, tmp_path, BOB, 1, 2)
    before = bob_s.read_bytes()
    alice = make(tmp_path, identity=ALICE)
    assert alice.adopted == 0
    assert alice.left_alone == {OTHER_KEY: 1}
    assert drain(alice) == []
    assert bob_s.read_bytes() == before
    later = make(tmp_path, identity=BOB)  # bob's next server sends it
    assert drain(later) == lines(1, 2)


def test_another_server_of_the_same_user_does_not_adopt_it(make: Make, tmp_path: Path) -> None:
    leftover(make, tmp_path, SpoolIdentity("alice", "gpu", os.getuid()), 1)
    alice = make(tmp_path, identity=ALICE)
    assert (alice.adopted, alice.left_alone) == (0, {OTHER_KEY: 1})


def test_a_segment_named_alice_s_but_stamped_bob_s_is_left_alone(
    make: Make, tmp_path: Path
) -> None:
    renamed = as_alice_s(leftover(make, tmp_path, BOB, 1, 2))
    before = renamed.read_bytes()
    alice = make(tmp_path, identity=ALICE)
    assert (alice.adopted, alice.left_alone) == (0, {OTHER_STAMP: 1})
    assert drain(alice) == []
    assert renamed.read_bytes() == before


def test_an_unstamped_segment_is_left_alone(make: Make, tmp_path: Path) -> None:
    path = leftover(make, tmp_path, ALICE, 1, 2)
    path.write_bytes(b"\n".join(lines(7, 8)) + b"\n")  # e.g. written by an older version
    alice = make(tmp_path, identity=ALICE)
    assert (alice.adopted, alice.left_alone) == (0, {UNSTAMPED: 1})
    assert drain(alice) == []
    assert path.exists()


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another uid needs root")
def test_a_segment_owned_by_another_uid_is_left_alone(make: Make, tmp_path: Path) -> None:
    path = leftover(make, tmp_path, ALICE, 1, 2)
    os.chown(path, 65534, 65534)
    alice = make(tmp_path, identity=ALICE)
    assert (alice.adopted, alice.left_alone) == (0, {OTHER_UID: 1})
    assert path.exists()


def test_a_symlinked_segment_is_not_followed(make: Make, tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "spool", tmp_path / "elsewhere"
    path = leftover(make, folder, ALICE, 1, 2)
    elsewhere.mkdir()
    target = path.rename(elsewhere / "target.jsonl")  # stamped as alice's: only the link is wrong
    path.symlink_to(target)
    alice = make(folder, identity=ALICE)
    assert (alice.adopted, alice.left_alone) == (0, {NOT_A_FILE: 1})
    assert drain(alice) == []
    assert path.is_symlink()
    assert len(target.read_bytes().splitlines()) == 3


def opened_in_time(make: Make, folder: Path) -> ForwardSpool:
    """Open alice's spool on a thread; fail if it does not return (it must never block)."""
    opened: list[ForwardSpool] = []
    thread = threading.Thread(target=lambda: opened.append(make(folder, identity=ALICE)),
                              daemon=True)  # fmt: skip
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "opening the spool blocked"
    return opened[0]


def test_a_fifo_as_lock_or_segment_does_not_block_the_start(make: Make, tmp_path: Path) -> None:
    path = leftover(make, tmp_path, ALICE, 1)
    owner = ".".join(path.name.split(".")[:2])
    (tmp_path / f"{owner}.lock").unlink()
    os.mkfifo(tmp_path / f"{owner}.lock")
    stopped = leftover(make, tmp_path, ALICE, 2)
    stopped.unlink()
    os.mkfifo(stopped)
    alice = opened_in_time(make, tmp_path)
    assert alice.left_alone == {NOT_A_FILE: 1}  # the FIFO segment; the FIFO lock: not a lock
    assert drain(alice) == []


def test_a_held_lock_does_not_block_the_start(make: Make, tmp_path: Path) -> None:
    path = leftover(make, tmp_path, ALICE, 1)
    owner = ".".join(path.name.split(".")[:2])
    with (tmp_path / f"{owner}.lock").open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # its owner runs
        alice = opened_in_time(make, tmp_path)
        assert (alice.adopted, alice.left_alone) == (0, {})
        assert path.exists()


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_folder_others_may_write_to_is_refused(make: Make, tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(SpoolFolderError, match=f"{folder} may be written by others"):
        make(folder)
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another uid needs root")
def test_a_folder_of_another_uid_is_refused(make: Make, tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(SpoolFolderError, match="is owned by uid 65534"):
        make(folder)


def test_a_file_instead_of_the_folder_is_refused(make: Make, tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("")
    with pytest.raises(SpoolFolderError, match="cannot be made"):
        make(tmp_path / "spool")


def test_the_acknowledged_offset_survives_a_restart(make: Make, tmp_path: Path) -> None:
    first = make(tmp_path)
    first.append(lines(1, 2, 3, 4, 5))
    taken = first.take(2, 1 << 20)
    assert taken is not None
    first.done(taken)
    first.close()
    second = make(tmp_path)
    assert (second.adopted, second.pending) == (3, 3)
    taken = second.take(1, 1 << 20)
    assert taken is not None
    second.done(taken)
    second.close()
    third = make(tmp_path)
    assert drain(third) == lines(4, 5)


def test_a_torn_acknowledgement_sends_the_segment_again(make: Make, tmp_path: Path) -> None:
    first = make(tmp_path)
    first.append(lines(1, 2, 3))
    taken = first.take(1, 1 << 20)
    assert taken is not None
    first.done(taken)
    first.close()
    [path] = segments(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b'"acked":"') + len(b'"acked":"')
    data[at + 18 : at + 20] = b"99"  # not the start of an event: trust nothing of it
    path.write_bytes(bytes(data))
    assert drain(make(tmp_path)) == lines(1, 2, 3)


def test_delivered_events_leave_the_disk_at_once(make: Make, tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=1 << 20)
    spool.append(lines(1, 2))
    assert drain(spool) == lines(1, 2)
    assert segments(tmp_path) == []  # the newest segment too, though it is not full
    spool.append(lines(3))
    assert events_on_disk(tmp_path) == lines(3)
    assert drain(spool) == lines(3)
    assert segments(tmp_path) == []
    assert (spool.pending, spool.size) == (0, 0)


def test_a_spool_closed_with_everything_delivered_leaves_no_file(
    make: Make, tmp_path: Path
) -> None:
    spool = make(tmp_path, segment_bytes=1 << 20)
    spool.append(lines(1, 2))
    assert drain(spool) == lines(1, 2)
    spool.close()
    assert list(tmp_path.iterdir()) == []
    kept = make(tmp_path, segment_bytes=1 << 20)
    kept.append(lines(3))
    kept.close()  # an event left: its segment and the lock that names its owner stay
    assert events_on_disk(tmp_path) == lines(3)
    assert make(tmp_path, segment_bytes=1 << 20).pending == 1


def test_a_partly_delivered_segment_keeps_only_its_offset(make: Make, tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=1 << 20)
    spool.append(lines(1, 2, 3))
    taken = spool.take(2, 1 << 20)
    assert taken is not None
    spool.done(taken)
    [path] = segments(tmp_path)
    stamp = json.loads(path.read_bytes().splitlines()[0])
    assert int(stamp["acked"]) == path.read_bytes().index(b'{"n":3}')
    assert (spool.pending, spool.size) == (1, len(b'{"n":3}\n'))


def test_stopped_owners_locks_are_cleaned_up(make: Make, tmp_path: Path) -> None:
    make(tmp_path).close()
    make(tmp_path).close()
    alice = make(tmp_path)
    assert [p.name for p in tmp_path.glob("*.lock")] == [f"{alice.owner}.lock"]


def padded(start: int, count: int = 5) -> list[bytes]:
    """Return `count` events of about 300 bytes, numbered from `start`."""
    return [b'{"n":%d,"pad":"%s"}' % (n, b"p" * 300) for n in range(start, start + count)]


def test_a_full_disk_appends_nothing_and_loses_no_later_event(
    make: Make,
    small_disk: Path,  # noqa: F811 - the fixture imported above
) -> None:
    """An append the full disk cut short leaves nothing behind (the forwarder retries the same
    block); once there is room, every event appended is sent once, those after it too."""
    (small_disk / "filler").write_bytes(b"x" * (16 << 10))
    folder = small_disk / "spool"
    folder.mkdir(mode=0o700)
    spool = make(folder)
    appended: list[bytes] = []
    n = 0
    while True:
        assert n < 1000, "the disk never filled"
        try:
            spool.append(padded(n))
        except OSError:
            break
        appended += padded(n)
        n += 5
    for _ in range(2):  # still full: the same block again, refused again
        with pytest.raises(OSError, match="No space left on device"):
            spool.append(padded(n))
    assert spool.pending == len(appended)
    (small_disk / "filler").unlink()
    for _ in range(4):
        spool.append(padded(n))
        appended += padded(n)
        n += 5
    assert drain(spool) == appended
