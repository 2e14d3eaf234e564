"""Count the jupyter_telemetry_ext functions and modules one posted event passes through.

python tools/event_path.py            # the two figures
python tools/event_path.py --list     # and every function, by module

Starts a Jupyter server with the extension in this process (background writer, one file
handler), posts one event to warm it up, then profiles a second post of the same event through
the REST API until its line is in the file: every function of the package called on the way
(on the event loop and on the writer's thread) is counted once. Comprehensions are not
functions here (Python 3.12 inlines them); the writer is started anew for the measured post, so
its two functions that create a handler's thread are counted too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jupyter_telemetry_ext"
TOKEN = "event-path-token"  # noqa: S105 - the throwaway server's token
SCHEMA_ID = "https://events.jupyter.org/jupyter_telemetry_ext/command"
EVENT = {
    "schema_id": SCHEMA_ID,
    "version": 1,
    "data": {"action": "executed", "command_id": "notebook:run-cell"},
}
INLINED = {"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"}
CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.EventLog.handlers = [logging.FileHandler({log!r})]
c.EventLog.allowed_schemas = [{schema!r}]
"""


class Calls:
    """A profile function that notes each function of the package called, while on."""

    def __init__(self) -> None:
        self.on = False
        self.seen: set[tuple[str, str]] = set()
        self._prefix = str(PACKAGE) + os.sep

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        """Note a call of a function whose code lives in the package."""
        if event == "call" and self.on:
            code = frame.f_code
            if code.co_filename.startswith(self._prefix) and code.co_name not in INLINED:
                module = Path(code.co_filename).relative_to(PACKAGE).with_suffix("").as_posix()
                name = getattr(code, "co_qualname", code.co_name)  # Python 3.11 on
                self.seen.add((module.replace("/", "."), name))


async def _post(port: int) -> None:
    from tornado.httpclient import AsyncHTTPClient

    reply = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{port}/api/telemetry/events",
        method="POST",
        body=json.dumps(EVENT),
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    if json.loads(reply.body) != {"status": "recorded"}:
        msg = f"unexpected reply: {reply.body!r}"
        raise SystemExit(msg)


async def _written(path: Path, lines: int) -> None:
    """Wait until the file holds `lines` lines (read without calling the package)."""
    deadline = time.monotonic() + 10
    while path.read_text("utf-8").count("\n") < lines:
        if time.monotonic() > deadline:
            msg = "the event was not written within 10 s"
            raise SystemExit(msg)
        await asyncio.sleep(0.01)


async def measure(port: int, log: Path, eventlog: Any, calls: Calls) -> None:
    """Warm up with one post, then profile the next one from the request to the file."""
    await _post(port)
    await _written(log, 1)
    # A new writer, so that its thread starts after the profile function is set for new threads.
    eventlog.background = False
    eventlog.background = True
    profile: Callable[..., Any] = calls
    threading.setprofile(profile)
    sys.setprofile(profile)
    calls.on = True
    await _post(port)
    await _written(log, 2)
    calls.on = False
    sys.setprofile(None)
    threading.setprofile(None)  # type: ignore[arg-type,unused-ignore]  # None removes it


def run(tmp: Path) -> Calls:
    """Start the server in this process, measure one post, stop the server."""
    for name in ("config", "data", "runtime"):
        (tmp / name).mkdir()
        os.environ[f"JUPYTER_{name.upper()}_DIR"] = str(tmp / name)
    log = tmp / "events.log"
    (tmp / "config" / "jupyter_server_config.py").write_text(
        CONFIG.format(log=str(log), schema=SCHEMA_ID), "utf-8"
    )
    from jupyter_server.serverapp import ServerApp
    from tornado.ioloop import IOLoop

    app = ServerApp()
    app.initialize(
        argv=[
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            f"--ServerApp.root_dir={tmp}",
            f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            "--ServerApp.log_level=WARN",
        ]
    )
    extension = app.extension_manager.extension_apps["jupyter_telemetry_ext"]
    eventlog = next(iter(extension)).eventlog
    calls = Calls()

    async def measure_then_stop() -> None:
        try:
            await measure(app.port, log, eventlog, calls)
        finally:
            app.stop()

    IOLoop.current().add_callback(measure_then_stop)
    app.start()
    return calls


def main() -> None:
    """Print how many functions and modules of the package one posted event passes through."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="also list the functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        calls = run(Path(folder))
    if not calls.seen:
        msg = "no call was measured"
        raise SystemExit(msg)
    modules = sorted({module for module, _ in calls.seen})
    if args.list:
        for module in modules:
            names = sorted(name for m, name in calls.seen if m == module)
            print(f"{module}: {', '.join(names)}")
    print(f"functions: {len(calls.seen)}")
    print(f"modules: {len(modules)}")


if __name__ == "__main__":
    main()
