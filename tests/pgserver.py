"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl, as `postgres` when run as root."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers import free_port

BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
            "/usr/lib/postgresql/15/bin")  # fmt: skip


def binaries() -> Path | None:
    """Return the folder of initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    return next((Path(d) for d in BIN_DIRS if (Path(d) / "pg_ctl").exists()), None)


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 and a socket there."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        """Create the cluster (trust authentication: any password is accepted)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")  # fmt: skip

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # Commits are written before they are acknowledged (synchronous_commit stays on), so
        # a test that kills the server loses none; fsync is off: no machine crash is tested.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "30",
                  "start", "-o", options)  # fmt: skip

    def stop(self) -> None:
        """Stop the server at once (connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, dbname: str = "postgres", password: str = "") -> str:
        """Return a URL of a database on this server (TCP on 127.0.0.1)."""
        secret = f":{password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """Create a fresh database; return its name."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def remove(self) -> None:
        """Delete the cluster's folder."""
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def running_server(bindir: Path) -> Iterator[PostgresServer]:
    """Yield a started server; stop it and delete it afterwards, even when a test failed."""
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test stopped it already
            server.stop()
        server.remove()


def server_for_tests() -> Iterator[PostgresServer]:
    """Yield a started server for a fixture: the tests skip without the binaries, except on CI,
    where they must run."""
    bindir = binaries()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries not found: CI must run the PostgreSQL tests")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    with running_server(bindir) as server:
        yield server
