"""In-process benchmark: `EventLog.record_event` against jupyter_events and a plain logging floor.

Every contender writes one JSON line per event to `logging.FileHandler`s in a temporary
directory. The contenders take turns within each round (the order rotates), and each round
times a batch sized to last about `--round-seconds`. The figures are microseconds per event:
the median over rounds, with the interquartile range and min-max.

    python benchmarks/bench_record.py            # table
    python benchmarks/bench_record.py --json     # machine-readable
    python benchmarks/bench_record.py --profile  # where `record_event` spends its time
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    ALLOWED_ACTIONS,
    ALLOWED_SCHEMAS,
    EVENT,
    FILTERED_EVENT,
    REDACTED_PROPERTY,
    SCHEMA,
    SCHEMA_ID,
    SCHEMA_VERSION,
    Stats,
    dumps_json,
    environment,
    render_table,
)
from jupyter_events import EventLogger

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext import EventLogger as DropIn

OURS = "jupyter_telemetry_ext record_event"
OURS_EMIT = "jupyter_telemetry_ext EventLogger.emit"
JUPYTER_EVENTS = "jupyter_events emit"
FLOOR = "floor: logging + json.dumps"
WARM_UP_EVENTS = 200
CALIBRATION_SECONDS = 0.05
TARGET_SPEEDUP = 7.0
TARGET_EMIT_SPEEDUP = 5.0
TARGET_FLOOR_RATIO = 1.3

LineCheck = Callable[[dict[str, Any]], str | None]


@dataclass
class Contender:
    """One way of recording the event, with the files it writes and what each line must hold."""

    name: str
    record: Callable[[], object]
    paths: list[Path]
    handlers: list[logging.Handler]
    check_line: LineCheck
    writes: bool = True
    batch: int = 0
    recorded: int = 0
    samples: list[float] = field(default_factory=list)

    def run(self, count: int) -> float:
        """Record `count` events; return the mean microseconds per event."""
        record = self.record
        start = time.perf_counter_ns()
        for _ in range(count):
            record()
        elapsed = time.perf_counter_ns() - start
        self.recorded += count
        return elapsed / count / 1000.0

    def close(self) -> None:
        """Flush and close the contender's handlers."""
        for handler in self.handlers:
            handler.close()


@dataclass(frozen=True)
class RatioSpec:
    """A ratio of two contenders' medians, with its target (a floor or a ceiling) if any."""

    numerator: str
    denominator: str
    target: float | None = None
    at_least: bool = True

    @property
    def label(self) -> str:
        """Return the target as text, e.g. `>= 7`."""
        return "" if self.target is None else f"{'>=' if self.at_least else '<='} {self.target:g}"

    def met(self, value: float) -> bool | None:
        """Return whether the value meets the target (None without one)."""
        if self.target is None:
            return None
        return value >= self.target if self.at_least else value <= self.target


@dataclass
class Scenario:
    """Contenders measured against each other, and the ratios reported for them."""

    key: str
    title: str
    contenders: list[Contender]
    ratios: list[RatioSpec]
    problems: list[str] = field(default_factory=list)

    def by_name(self, name: str) -> Contender:
        """Return the contender with that name."""
        return next(c for c in self.contenders if c.name == name)


# Contenders


def file_handlers(
    directory: Path, stem: str, count: int
) -> tuple[list[logging.Handler], list[Path]]:
    """Return `count` FileHandlers writing to fresh files, and their paths."""
    paths = [directory / f"{stem}-{i}.jsonl" for i in range(count)]
    handlers: list[logging.Handler] = [logging.FileHandler(p, encoding="utf-8") for p in paths]
    return handlers, paths


def build_ours(directory: Path, stem: str, handler_count: int, event: dict[str, Any]) -> Contender:
    """Our EventLog: validation, allow-list, redaction and capsule, then the handlers."""
    handlers, paths = file_handlers(directory, stem, handler_count)
    log = EventLog(handlers=handlers, allowed_schemas=ALLOWED_SCHEMAS)
    log.register_schema(SCHEMA)
    record_event = log.record_event

    def record() -> object:
        return record_event(SCHEMA_ID, SCHEMA_VERSION, event)

    writes = event.get("action") in ALLOWED_ACTIONS
    return Contender(OURS, record, paths, handlers, check_redacted, writes=writes)


def build_ours_emit(
    directory: Path, stem: str, handler_count: int, event: dict[str, Any]
) -> Contender:
    """Our drop-in EventLogger, called as jupyter_events' is: modifiers, validation, our
    EventLog's allow-list, redaction and capsule, then the handlers."""
    handlers, paths = file_handlers(directory, stem, handler_count)
    logger = DropIn(handlers=handlers, allowed_schemas=ALLOWED_SCHEMAS)
    logger.register_event_schema(SCHEMA)
    emit = logger.emit

    def record() -> object:
        return emit(schema_id=SCHEMA_ID, data=event)

    return Contender(OURS_EMIT, record, paths, handlers, check_redacted)


def build_jupyter_events(
    directory: Path, stem: str, handler_count: int, event: dict[str, Any]
) -> Contender:
    """jupyter_events' EventLogger with the same schema (it ignores `categories`)."""
    handlers, paths = file_handlers(directory, stem, handler_count)
    logger = EventLogger()
    for handler in handlers:
        logger.register_handler(handler)
    logger.register_event_schema(SCHEMA)
    emit = logger.emit

    def record() -> object:
        return emit(schema_id=SCHEMA_ID, data=event)

    return Contender(JUPYTER_EVENTS, record, paths, handlers, check_unredacted)


class JSONLineFormatter(logging.Formatter):
    """Formats a record whose message is a dict as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the dict as JSON."""
        return json.dumps(record.msg)


def build_floor(directory: Path, stem: str, handler_count: int, event: dict[str, Any]) -> Contender:
    """A plain logger with a JSON formatter: no validation, no capsule, no redaction."""
    handlers, paths = file_handlers(directory, stem, handler_count)
    logger = logging.getLogger(f"bench.floor.{stem}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.setFormatter(JSONLineFormatter())
        logger.addHandler(handler)
    info = logger.info

    def record() -> object:
        info(event)
        return None

    return Contender(FLOOR, record, paths, handlers, check_event_only)


# What each line must hold


def check_capsule(line: dict[str, Any]) -> str | None:
    """Return a problem when the line is not a capsule of the benchmark's schema."""
    if line.get("__schema__") != SCHEMA_ID or str(line.get("__schema_version__")) != SCHEMA_VERSION:
        return f"not a capsule of {SCHEMA_ID} version {SCHEMA_VERSION}: {sorted(line)}"
    if not isinstance(line.get("__timestamp__"), str):
        return "no __timestamp__"
    return None


def check_redacted(line: dict[str, Any]) -> str | None:
    """Our capsule: the event with the user-identifier property redacted to null."""
    expected = {**EVENT, REDACTED_PROPERTY: None}
    event = {k: v for k, v in line.items() if not k.startswith("__")}
    if event != expected:
        return f"redacted event differs: {event!r}"
    return check_capsule(line)


def check_unredacted(line: dict[str, Any]) -> str | None:
    """jupyter_events' capsule: the event as given (it has no redaction)."""
    event = {k: v for k, v in line.items() if not k.startswith("__")}
    return f"event differs: {event!r}" if event != EVENT else check_capsule(line)


def check_event_only(line: dict[str, Any]) -> str | None:
    """The floor's line: the event dict itself."""
    return None if line == EVENT else f"event differs: {line!r}"


def check_files(contender: Contender) -> list[str]:
    """Return every problem with the contender's files: line count and line contents."""
    expected = contender.recorded if contender.writes else 0
    problems = []
    for path in contender.paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) != expected:
            problems.append(
                f"{contender.name}: {path.name} holds {len(lines)} lines, expected {expected}"
            )
        for number, text in enumerate(lines, 1):
            problem = contender.check_line(json.loads(text))
            if problem:
                problems.append(f"{contender.name}: {path.name} line {number}: {problem}")
                break
    return problems


# Measurement


def calibrate(contender: Contender, round_seconds: float) -> None:
    """Warm the contender up and size its batch so that one batch lasts about `round_seconds`."""
    contender.run(WARM_UP_EVENTS)
    count = 100
    while True:
        per_event = contender.run(count) / 1e6
        if per_event * count >= CALIBRATION_SECONDS:
            break
        count *= 4
    contender.batch = max(100, round(round_seconds / per_event))


def measure(scenario: Scenario, rounds: int, round_seconds: float) -> None:
    """Alternate the contenders over the rounds, rotating their order each round."""
    for contender in scenario.contenders:
        calibrate(contender, round_seconds)
    contenders = scenario.contenders
    for number in range(rounds):
        shift = number % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            gc.collect()
            contender.samples.append(contender.run(contender.batch))
    for contender in contenders:
        contender.close()
        scenario.problems.extend(check_files(contender))


def ratio(scenario: Scenario, numerator: str, denominator: str) -> tuple[float, float, float]:
    """Return the ratio of the medians, and the lowest and highest ratio within one round."""
    top, bottom = scenario.by_name(numerator).samples, scenario.by_name(denominator).samples
    per_round = [a / b for a, b in zip(top, bottom, strict=True)]
    return Stats.of(top).median / Stats.of(bottom).median, min(per_round), max(per_round)


# Scenarios


def build_scenarios(directory: Path) -> list[Scenario]:
    """Return the scenarios: one handler, two handlers, an event the allow-list filters, and
    `emit` through the drop-in EventLogger against jupyter_events'."""
    one = [
        build_ours(directory, "ours-1", 1, EVENT),
        build_jupyter_events(directory, "je-1", 1, EVENT),
        build_floor(directory, "floor-1", 1, EVENT),
    ]
    two = [
        build_ours(directory, "ours-2", 2, EVENT),
        build_jupyter_events(directory, "je-2", 2, EVENT),
        build_floor(directory, "floor-2", 2, EVENT),
    ]
    filtered = [
        build_ours(directory, "ours-filtered", 1, FILTERED_EVENT),
        build_floor(directory, "floor-filtered", 1, EVENT),
    ]
    pairs = [
        RatioSpec(JUPYTER_EVENTS, OURS, TARGET_SPEEDUP, at_least=True),
        RatioSpec(OURS, FLOOR, TARGET_FLOOR_RATIO, at_least=False),
    ]
    emit = [
        build_ours_emit(directory, "ours-emit", 1, EVENT),
        build_jupyter_events(directory, "je-emit", 1, EVENT),
    ]
    return [
        Scenario("one_handler", "One FileHandler, event recorded (user redacted)", one, pairs),
        Scenario("two_handlers", "Two FileHandlers, event recorded (user redacted)", two, pairs),
        Scenario(
            "filtered",
            "Event filtered by the allow-list (ours writes nothing; the floor writes it)",
            filtered,
            [RatioSpec(OURS, FLOOR)],
        ),
        Scenario(
            "emit",
            "emit through our EventLogger vs jupyter_events', one FileHandler (user redacted)",
            emit,
            [RatioSpec(JUPYTER_EVENTS, OURS_EMIT, TARGET_EMIT_SPEEDUP, at_least=True)],
        ),
    ]


# Reporting


def scenario_report(scenario: Scenario) -> dict[str, Any]:
    """Return the scenario's figures as plain JSON values."""
    contenders = {
        c.name: {
            "us_per_event": Stats.of(c.samples).as_dict(),
            "batch": c.batch,
            "events": c.recorded,
        }
        for c in scenario.contenders
    }
    ratios = []
    for spec in scenario.ratios:
        value, low, high = ratio(scenario, spec.numerator, spec.denominator)
        ratios.append({
            "ratio": f"{spec.numerator} / {spec.denominator}",
            "value": value,
            "per_round_min": low,
            "per_round_max": high,
            "target": spec.label or None,
            "met": spec.met(value),
        })  # fmt: skip
    return {
        "title": scenario.title,
        "contenders": contenders,
        "ratios": ratios,
        "problems": scenario.problems,
    }


def render_scenario(report: dict[str, Any]) -> str:
    """Return the scenario's table and ratios as text."""
    rows = []
    for name, figures in report["contenders"].items():
        s = figures["us_per_event"]
        rows.append([
            name, f"{s['median']:.1f}", f"{s['q1']:.1f}-{s['q3']:.1f}",
            f"{s['min']:.1f}-{s['max']:.1f}", str(figures["batch"]),
        ])  # fmt: skip
    headers = ["contender", "median us/event", "IQR", "min-max", "events/round"]
    lines = [report["title"], render_table(headers, rows), ""]
    for r in report["ratios"]:
        verdict = "" if r["met"] is None else ("  met" if r["met"] else "  MISSED")
        target = f"  (target {r['target']})" if r["target"] else ""
        spread = f"[rounds {r['per_round_min']:.2f}-{r['per_round_max']:.2f}]"
        lines.append(f"  {r['ratio']}: {r['value']:.2f}x {spread}{target}{verdict}")
    lines.extend(f"  PROBLEM: {p}" for p in report["problems"])
    lines.append(f"  files checked: {'ok' if not report['problems'] else 'FAILED'}")
    return "\n".join(lines)


def run_benchmark(rounds: int, round_seconds: float) -> dict[str, Any]:
    """Measure every scenario in a fresh temporary directory; return the report."""
    reports: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        for scenario in build_scenarios(Path(tmp)):
            measure(scenario, rounds, round_seconds)
            reports[scenario.key] = scenario_report(scenario)
    return {
        "benchmark": "record",
        "environment": environment(),
        "rounds": rounds,
        "round_seconds": round_seconds,
        "scenarios": reports,
    }


def profile_ours(events: int, top: int) -> str:
    """Return cProfile's view of `record_event` over `events` events, by own time."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        contender = build_ours(Path(tmp), "profile", 1, EVENT)
        contender.run(WARM_UP_EVENTS)
        profiler = cProfile.Profile()
        profiler.enable()
        contender.run(events)
        profiler.disable()
        contender.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)
    return out.getvalue()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per scenario (default 7)")
    parser.add_argument(
        "--round-seconds", type=float, default=0.5,
        help="how long one contender's batch lasts (default 0.5)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.1 s: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--profile", type=int, metavar="EVENTS", nargs="?", const=50_000, default=None,
        help="instead of the benchmark, profile record_event over EVENTS events (default 50000)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.round_seconds = 3, 0.1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 when a file does not hold what was recorded."""
    args = parse_args(argv)
    if args.profile is not None:
        print(profile_ours(args.profile, top=25))
        return 0
    report = run_benchmark(args.rounds, args.round_seconds)
    if args.json:
        print(dumps_json(report))
    else:
        env = report["environment"]
        print(f"record_event benchmark: Python {env['python']} on {env['machine']}, "
              f"{args.rounds} rounds of ~{args.round_seconds:g} s per contender\n")  # fmt: skip
        print("\n\n".join(render_scenario(r) for r in report["scenarios"].values()))
    failed = any(r["problems"] for r in report["scenarios"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
