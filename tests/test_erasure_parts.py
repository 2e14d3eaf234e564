"""The parts behind erasure and the collector's memory, on real files: tombstones, id journal."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.filesink import REPLACED_CHECK_SECONDS
from jupyter_telemetry_ext.core.recorded_user import hashed_user
from jupyter_telemetry_ext.core.tombstones import (
    Tombstones,
    add_to_file,
    erased_file,
    read_file,
    sources_of,
    user_key,
)
from jupyter_telemetry_ext.server.duplicates import Duplicates
from jupyter_telemetry_ext.server.idjournal import IdJournal
from jupyter_telemetry_ext.server.reception import Policy
from jupyter_telemetry_ext.sinks.retention import erase_files
from tests.conftest import make_schema
from tests.servers import read_events

SCHEMA_ID = "test.events/example"

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_a_tombstone_is_the_stored_hash_or_a_keyed_hash_of_a_name() -> None:
    stored = hashed_user(b"deployment key", "alice")
    assert user_key(b"store key", stored) == stored  # already keyed: reused
    named = user_key(b"store key", "alice")
    assert named not in ("alice", hashed_user(b"deployment key", "alice"))
    assert named == hashed_user(b"store key", "alice")


def test_only_events_from_before_the_erasure_are_dropped() -> None:
    tombstones = Tombstones(b"k", {user_key(b"k", "carol"): NOW})
    before, after = NOW - timedelta(seconds=1), NOW + timedelta(seconds=1)
    assert tombstones.drops("carol", before)
    assert tombstones.drops("carol", after, before)  # received after, happened before
    assert not tombstones.drops("carol", after, None)
    assert not tombstones.drops("bob", before)
    assert not tombstones.drops(None, before)


def test_a_logs_tombstones_are_private_and_survive_a_second_erasure(tmp_path: Path) -> None:
    path = erased_file(tmp_path / "events.log")
    add_to_file(path, ["carol"], NOW)
    add_to_file(path, ["dave"], NOW + timedelta(hours=1))
    found = read_file(path)
    assert found.erased_at("carol") == NOW
    assert found.erased_at("dave") == NOW + timedelta(hours=1)
    assert "carol" not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_collector_finds_the_tombstones_of_the_logs_it_writes(tmp_path: Path) -> None:
    handler = logging.FileHandler(tmp_path / "events.log", delay=True)
    other = logging.StreamHandler()
    sources = sources_of([handler, other])
    assert len(sources) == 1
    assert sources[0].erased_at("carol") is None
    add_to_file(erased_file(tmp_path / "events.log"), ["carol"], NOW)
    assert sources[0].erased_at("carol") == NOW  # read again: it changed


KEY = b"k" * 32  # of the journal's pseudonyms


def test_recorded_ids_survive_a_restart_within_the_window(tmp_path: Path) -> None:
    clock = [1000.0]
    journal = IdJournal(tmp_path / "ids", window=60, capacity=100, key=KEY)
    ids = Duplicates(60, 100, journal=journal, clock=lambda: clock[0])
    ids.add("alice", "e1")
    ids.add("bob", "e1")
    clock[0] += 30
    ids.add("alice", "e2")
    journal.close()
    with next(iter((tmp_path / "ids").glob("*.ids"))).open("a") as f:
        f.write('[1030.0, "alice", "e3"')  # a line cut short by a crash
    again = Duplicates(60, 100, journal=IdJournal(tmp_path / "ids", 60, 100, key=KEY),
                       clock=lambda: clock[0])  # fmt: skip
    assert again.seen("alice", "e1")
    assert again.seen("bob", "e1")
    assert again.seen("alice", "e2")
    assert not again.seen("alice", "e3")
    clock[0] += 45  # e1s are past the window now, e2 is not
    later = Duplicates(60, 100, journal=IdJournal(tmp_path / "ids", 60, 100, key=KEY),
                       clock=lambda: clock[0])  # fmt: skip
    assert not later.seen("alice", "e1")
    assert later.seen("alice", "e2")


def test_the_journal_names_nobody_and_reads_an_older_journals_names(tmp_path: Path) -> None:
    """Ids are journaled under a keyed hash of their principal, which the store's user hashes
    cannot be matched with; a line an older release wrote with the name still counts."""
    clock = [1000.0]
    journal = IdJournal(tmp_path / "ids", window=60, capacity=100, key=KEY)
    journal.append(999.0, "user:bob", "old")  # as an older release wrote it
    ids = Duplicates(60, 100, journal=journal, clock=lambda: clock[0])
    ids.add("user:alice", "e1")
    journal.close()
    [segment] = (tmp_path / "ids").glob("*.ids")
    text = segment.read_text()
    assert "e1" in text
    assert "alice" not in text
    again = Duplicates(60, 100, journal=IdJournal(tmp_path / "ids", 60, 100, key=KEY),
                       clock=lambda: clock[0])  # fmt: skip
    assert again.seen("user:alice", "e1")
    assert again.seen("user:bob", "old")
    assert not again.seen("user:bob", "e1")  # ids stay each principal's own
    other_key = Duplicates(60, 100, journal=IdJournal(tmp_path / "ids", 60, 100, key=b"k2" * 16),
                           clock=lambda: clock[0])  # fmt: skip
    assert not other_key.seen("user:alice", "e1")


def test_a_batchs_ids_are_journaled_in_one_write_as_its_block_ends(tmp_path: Path) -> None:
    """Within `journaling` the ids are remembered at once and written when the block ends;
    a write that crosses a segment's size starts the next segment at the size."""
    journal = IdJournal(
        tmp_path / "ids", window=600, capacity=1000, key=KEY
    )  # 1,000 lines a segment
    ticks = itertools.count(1000.0, 0.001)
    ids = Duplicates(600, 3000, journal=journal, clock=lambda: next(ticks))
    with ids.journaling():
        for n in range(1500):
            ids.add("alice", f"e{n}")
        assert ids.seen("alice", "e0")
        assert list(journal.load(1000.0)) == []  # not on disk before the block ends
    journal.close()
    lines = [path.read_text().count("\n") for path in (tmp_path / "ids").glob("*.ids")]
    assert sorted(lines) == [500, 1000]
    again = Duplicates(600, 3000, journal=IdJournal(tmp_path / "ids", 600, 1000, key=KEY),
                       clock=lambda: 1000.0)  # fmt: skip
    assert all(again.seen("alice", f"e{n}") for n in range(1500))


def test_old_segments_are_deleted_and_nothing_is_rewritten(tmp_path: Path) -> None:
    journal = IdJournal(tmp_path / "ids", window=100, capacity=4000, key=KEY)
    for n in range(10):  # a new segment every quarter window
        journal.append(1000.0 + 30 * n, "alice", f"e{n}")
    journal.close()
    segments = sorted((tmp_path / "ids").glob("*.ids"))
    kept = list(journal.load(1270.0))
    assert [client_id for _, _, client_id in kept] == ["e6", "e7", "e8", "e9"]
    assert len(segments) == 5  # the five that ended more than a window ago are gone


def test_with_reply_after_write_an_id_is_journaled_once_written(tmp_path: Path) -> None:
    options = SimpleNamespace(
        duplicate_window=60.0, duplicate_capacity=100, duplicate_capacity_per_user=100,
        event_time_window=0.0, rate_limit=0.0, rate_burst=1, record_user="none",
        user_hash_secret="", data_dir=str(tmp_path), reply_after_write=True,
        duplicate_journal=str(tmp_path / "ids"),
    )  # fmt: skip
    policy = Policy.from_options(options)  # type: ignore[arg-type]
    reception = policy.reception("alice", "alice", NOW)
    for client_id in ("w1", "w2"):
        reception.remember(client_id, durable=False)  # as `record` does with a ticket
        policy.owed.pending(reception.id_key(client_id))
    failed = {reception.id_key("w2"): {logging.StreamHandler()}}  # one handler missed w2
    policy.owed.settle([reception.id_key("w1"), reception.id_key("w2")], failed)
    assert policy.duplicates is not None
    assert policy.duplicates.journal is not None
    policy.duplicates.journal.close()
    journal = IdJournal(tmp_path / "ids", 60, 100, key=policy.key_secret)
    again = Duplicates(60, 100, journal=journal)
    assert again.seen("alice", "w1")
    assert not again.seen("alice", "w2")  # not written: its resend after a restart is recorded


@pytest.mark.parametrize("background", [False, True])
def test_events_written_while_a_live_log_is_erased_are_all_kept(
    tmp_path: Path, background: bool
) -> None:
    """An erasure rewrites the log a server is writing: what the server appends meanwhile, to
    the old file until it notices the new one, is carried over; only the erased user's go."""
    log = tmp_path / "events.jsonl"
    handler = logging.FileHandler(log)
    allowed = {SCHEMA_ID: {"allowed_categories": ["unrestricted", "user-identifier"]}}
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed, background=background)
    eventlog.register_schema(make_schema(n={"type": "integer"}))
    for n in range(50):
        eventlog.record_event(SCHEMA_ID, 1, {"n": n}, context={"__user__": "carol"})
    assert eventlog.flush(timeout=10)
    erasing = threading.Thread(target=erase_files, args=(log, {"carol"}))
    written = itertools.count()
    try:
        erasing.start()
        while erasing.is_alive():  # for the whole erasure (over a second), and a little after
            eventlog.record_event(SCHEMA_ID, 1, {"n": next(written)}, context={"__user__": "bob"})
            time.sleep(0.001)
        for _ in range(20):
            eventlog.record_event(SCHEMA_ID, 1, {"n": next(written)}, context={"__user__": "bob"})
        assert eventlog.flush(timeout=10)
    finally:
        erasing.join()
        eventlog.close()
        handler.close()
    events = read_events(log)
    assert {e["__user__"] for e in events} == {"bob"}
    assert sorted(e["n"] for e in events) == list(range(next(written)))


@pytest.mark.parametrize("background", [False, True])
def test_a_plain_file_handler_writes_to_a_log_replaced_or_removed_under_it(
    tmp_path: Path, background: bool
) -> None:
    """`erase` and retention replace a log: the next events go to the file at its path."""
    log = tmp_path / "events.jsonl"
    handler = logging.FileHandler(log)
    eventlog = EventLog(handlers=[handler], allowed_schemas=[SCHEMA_ID], background=background)
    eventlog.register_schema(make_schema(n={"type": "integer"}))
    try:
        eventlog.record_event(SCHEMA_ID, 1, {"n": 1})
        assert eventlog.flush(timeout=10)
        replacement = tmp_path / "events.jsonl.new"
        replacement.write_text("")
        replacement.replace(log)  # as `erase` leaves it: rewritten and replaced
        time.sleep(REPLACED_CHECK_SECONDS)  # (`erase` carries over what came in meanwhile)
        eventlog.record_event(SCHEMA_ID, 1, {"n": 2})
        assert eventlog.flush(timeout=10)
        assert [e["n"] for e in read_events(log)] == [2]
        log.unlink()
        time.sleep(REPLACED_CHECK_SECONDS)
        eventlog.record_event(SCHEMA_ID, 1, {"n": 3})
        assert eventlog.flush(timeout=10)
        assert [e["n"] for e in read_events(log)] == [3]
    finally:
        eventlog.close()
        handler.close()
