"""A real JupyterHub for the tests: configurable-http-proxy, SimpleLocalProcessSpawner,
DummyAuthenticator, users alice and bob (named servers allowed), the telemetry collector as a
managed service, a second collector service that the tests start and stop themselves
(`ExternalCollector`) and an admin service token; everything on 127.0.0.1, free ports, state in a
temporary folder.

The hub's telemetry config is the block `jupyterhub_config` of docs/jupyterhub.md, as written
but for its ports and paths (`doc_block` fills them in and fails when one is no longer there):
a wrong doc fails the tests.

Every process it starts carries a marker in its environment (the hub passes it to the proxy,
the services and the single-user servers), so `stop()` finds and kills whatever the hub left
behind, even when the hub failed to start. Reusable: `extra_config` adds hub config lines
(e.g. the single-user servers' forwarding), `collector_config` is the collector's config file;
`spawn(..., args=...)` starts one server with extra command-line options (its `user_options`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers import Process, free_port, log_tail, wait_until

ROOT = Path(__file__).resolve().parent.parent
PROXY_BIN = ROOT / "node_modules" / ".bin"
MARK = "TELEMETRY_TEST_HUB"
SERVICE = "telemetry"
# An external service: the hub proxies to its port, whether a collector listens there or not.
EXTERNAL_SERVICE = "telemetry-external"
ADMIN_SERVICE = "test-admin"
COLLECTOR_SCOPES = [f"access:services!service={name}" for name in (SERVICE, EXTERNAL_SERVICE)]
SINGLEUSER_ARGS = ["--allow-root"]

# Before the docs' block: what only a test hub needs (127.0.0.1, free ports, state in `tmp`, the
# dummy authenticator, local processes, named servers).
HUB_CONFIG = """\
import sys
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {tmp!r} + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + {tmp!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {tmp!r} + "/cookie_secret"
c.JupyterHub.pid_file = {tmp!r} + "/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {tmp!r} + "/home/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {singleuser_args!r}
c.JupyterHub.allow_named_servers = True
c.Spawner.ip = "127.0.0.1"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.env_keep = ["PATH", "PYTHONPATH", "LANG", "LC_ALL"]

def _prepare(spawner):
    # A free port; the command-line options of this spawn (tests only: users could pass any).
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        spawner.port = s.getsockname()[1]
    spawner.args = [*{singleuser_args!r}, *spawner.user_options.get("args", [])]

c.Spawner.pre_spawn_hook = _prepare

# --- docs/jupyterhub.md, block jupyterhub_config (ports and paths filled in) ---
"""

# After it: the marker and the Jupyter folders in every process's environment, a second
# (external) collector service and an admin service, both in the scopes the docs give.
HUB_TESTS_CONFIG = """
# --- the tests' additions ---
_ENV = {environment!r}
for _service in c.JupyterHub.services:
    _service["environment"] = {{**_service.get("environment", {{}}), **_ENV}}
c.Spawner.environment = {{**c.Spawner.environment, **_ENV}}
_EXTERNAL_SCOPE = "access:services!service={external}"
for _role in c.JupyterHub.load_roles:
    if _role["name"] == "server":
        _role["scopes"] = [*_role["scopes"], _EXTERNAL_SCOPE]
# JupyterHub 6 has extra_user_scopes; before it, the `user` role lists the scopes.
import jupyterhub
if int(jupyterhub.__version__.split(".")[0]) >= 6:
    c.JupyterHub.extra_user_scopes = [*c.JupyterHub.extra_user_scopes, _EXTERNAL_SCOPE]
    _quick_check = {{"timeout": 1}}  # how long the hub waits at start for the external one
else:
    c.JupyterHub.load_roles = [*c.JupyterHub.load_roles,
                               {{"name": "user", "scopes": ["self", *{collector_scopes!r}]}}]
    _quick_check = {{}}
c.JupyterHub.services = [
    *c.JupyterHub.services,
    {{"name": "{external}", "url": "http://127.0.0.1:{external_port}",
      "api_token": {external_token!r}, **_quick_check}},
    {{"name": "{admin}", "api_token": {admin_token!r}}},
]
c.JupyterHub.load_roles = [
    *c.JupyterHub.load_roles,
    {{"name": "test-admin", "services": ["{admin}"],
      "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens"]}},
]
"""

DOCS = ROOT / "docs"
_TESTED = re.compile(r"<!-- tested: (?P<name>[\w-]+) -->\n```\w+\n(?P<body>.*?)```", re.DOTALL)


def doc_blocks(page: str) -> dict[str, str]:
    """Return the fenced blocks of docs/`page` marked `<!-- tested: NAME -->`, by NAME."""
    text = (DOCS / page).read_text("utf-8")
    return {match["name"]: match["body"] for match in _TESTED.finditer(text)}


def doc_block(page: str, name: str, fill: dict[str, str] | None = None) -> str:
    """Return a tested block of docs/`page` with each placeholder replaced by its value (the
    placeholders are Python literals, e.g. `"..."`); fail when the block lacks one."""
    block = doc_blocks(page)[name]
    for placeholder, value in (fill or {}).items():
        if placeholder not in block:
            msg = f"docs/{page}, block {name}: no {placeholder} to fill in"
            raise LookupError(msg)
        block = block.replace(placeholder, value)
    return block


class Hub:
    """A JupyterHub subprocess; `start()` waits until its API answers through the proxy."""

    def __init__(
        self,
        tmp: Path,
        collector_config: Path,
        extra_config: str = "",
        users: tuple[str, ...] = ("alice", "bob"),
        database: str = "",
    ) -> None:
        """Write the hub's config in `tmp`: the docs' (its ports and paths filled in) within the
        tests' own; `database` is $TELEMETRY_DB. Nothing runs until `start()`."""
        self.tmp, self.users = tmp, users
        self.mark = secrets.token_hex(8)
        self.port = free_port()
        self.collector_port = free_port()
        self.external_port = free_port()
        self.admin_token = secrets.token_hex(16)
        self.external_token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.collector_url = f"{self.url}services/{SERVICE}/"
        self.log = tmp / "jupyterhub.log"
        self.database = database
        self.environment = {
            MARK: self.mark,
            "PYTHONPATH": str(ROOT),
            **{
                name: str(tmp / name.lower())
                for name in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")
            },
        }
        harness = HUB_CONFIG.format(
            tmp=str(tmp), port=self.port, hub_port=free_port(), proxy_api_port=free_port(),
            singleuser_args=SINGLEUSER_ARGS,
        )  # fmt: skip
        documented = doc_block("jupyterhub.md", "jupyterhub_config", {
            '"/etc/jupyterhub/telemetry_config.py"': repr(str(collector_config)),
            '"http://127.0.0.1:10101"': repr(f"http://127.0.0.1:{self.collector_port}"),
            '"http://127.0.0.1:8000/services/telemetry/"': repr(self.collector_url),
        })  # fmt: skip
        additions = HUB_TESTS_CONFIG.format(
            environment=self.environment, admin=ADMIN_SERVICE, admin_token=self.admin_token,
            collector_scopes=COLLECTOR_SCOPES, external=EXTERNAL_SERVICE,
            external_port=self.external_port, external_token=self.external_token,
        )  # fmt: skip
        self.config = tmp / "jupyterhub_config.py"
        self.config.write_text(harness + documented + additions + extra_config, "utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Start the hub and wait for its API (the proxy answers 404 until the hub's routes)."""
        # `jupyter` (the docs' service command) and the proxy on PATH; the database for the
        # docs' config (the hub hands it to the collector).
        path = f"{PROXY_BIN}:{Path(sys.executable).parent}:{os.environ['PATH']}"
        env = {**os.environ, **self.environment, "PATH": path, "TELEMETRY_DB": self.database}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.config)],
                cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                msg = f"the hub exited ({self.process.returncode}): {log_tail(self.log)}"
                raise RuntimeError(msg)
            return self.request("GET", "hub/api/")[0] == 200

        wait_until(up, timeout, lambda: f"the hub did not start: {log_tail(self.log)}", 0.2)
        status, reply = self.admin("POST", "hub/api/users", {"usernames": list(self.users)})
        assert status == 201, (status, reply)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        """Send a request through the proxy; return its status and JSON reply (None if none)."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"token {token}"
        payload = (
            data if data is not None else (None if body is None else json.dumps(body).encode())
        )
        request = urllib.request.Request(self.url + path, payload, all_headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, _json(response.read())
        except urllib.error.HTTPError as e:
            return e.code, _json(e.read())
        except OSError:
            return 0, None

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a request with the admin service's token."""
        return self.request(method, path, body, token=self.admin_token)

    def user_token(self, name: str) -> str:
        """Log `name` in over the API (DummyAuthenticator) and return a new token of theirs."""
        auth = {"auth": {"username": name, "password": "x"}}
        status, reply = self.request("POST", f"hub/api/users/{name}/tokens", auth)
        assert status in (200, 201), (status, reply)
        return str(reply["token"])

    def _server_model(self, name: str, server: str) -> dict[str, Any] | None:
        model = self.admin("GET", f"hub/api/users/{name}")[1] or {}
        found: dict[str, Any] | None = model.get("servers", {}).get(server)
        return found

    def spawn(
        self, name: str, server: str = "", args: tuple[str, ...] = (), timeout: float = 60
    ) -> None:
        """Start a server of the user (unless it runs), with `args` added to its command line,
        and wait until the hub says it is ready; `server` names a named server."""

        def ready() -> bool:
            return bool((self._server_model(name, server) or {}).get("ready"))

        if ready():
            return
        options = {"args": list(args)}  # the body is the user_options (JupyterHub 5 and 6)
        status, reply = self.admin("POST", f"hub/api/users/{name}/servers/{server}", options)
        assert status in (201, 202), (status, reply)
        wait_until(ready, timeout, lambda: f"{name}'s server did not start: {log_tail(self.log)}")

    def stop_server(self, name: str, server: str = "", timeout: float = 30) -> None:
        """Stop a server of the user (the spawner's signals) and wait until the hub says it is
        gone."""
        self.admin("DELETE", f"hub/api/users/{name}/servers/{server}")
        wait_until(
            lambda: self._server_model(name, server) is None,
            timeout,
            lambda: f"{name}'s server did not stop: {log_tail(self.log)}",
        )

    def processes(self) -> dict[int, dict[str, str]]:
        """Return the environment of every running process started for this hub, by pid."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                env = _environ(entry / "environ")
                if env.get(MARK) == self.mark:
                    found[int(entry.name)] = env
        return found

    def server_pid(self, name: str, server: str = "") -> int:
        """Return the pid of a single-user server of `name` (`server`: a named one)."""
        for pid, env in self.processes().items():
            if (env.get("JUPYTERHUB_USER") == name and "JUPYTERHUB_SERVICE_NAME" not in env
                    and env.get("JUPYTERHUB_SERVER_NAME", "") == server):  # fmt: skip
                return pid
        msg = f"no single-user server {name}/{server} runs"
        raise LookupError(msg)

    def server_env(self, name: str, server: str = "") -> dict[str, str]:
        """Return the environment of a single-user server of `name` (its token, its URLs)."""
        return self.processes()[self.server_pid(name, server)]

    def collector_pid(self) -> int:
        """Return the pid of the collector the hub started."""
        for pid, env in self.processes().items():
            if env.get("JUPYTERHUB_SERVICE_NAME") == SERVICE:
                return pid
        msg = "the collector does not run"
        raise LookupError(msg)

    def stop(self) -> None:
        """Stop the hub (SIGTERM), then kill every process of it that is still running."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in self.processes():  # services and servers the hub left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)


class ExternalCollector:
    """`jupyter telemetry collect --url` as the hub's external service EXTERNAL_SERVICE: the
    tests start and stop it; the hub proxies `services/telemetry-external/` to it all along."""

    def __init__(self, hub: Hub, config: Path, folder: Path) -> None:
        """Run with `config`, each run logging to a new file in `folder`; nothing runs yet."""
        self.hub, self.config, self.folder = hub, config, folder
        self.url = f"{hub.url}services/{EXTERNAL_SERVICE}/"  # through the proxy
        self.runs = 0
        self.log = folder / "collector-0.log"
        self.process: Process | None = None

    def start(self, timeout: float = 30) -> None:
        """Start it and wait until it answers through the proxy."""
        self.launch()
        self.wait_up(timeout)

    def launch(self) -> None:
        """Start it (with the hub's marker: `Hub.stop` kills it if a test could not)."""
        env = {**os.environ, **self.hub.environment, "TELEMETRY_DB": self.hub.database,
               "JUPYTERHUB_API_URL": f"{self.hub.url}hub/api",
               "JUPYTERHUB_API_TOKEN": self.hub.external_token,
               "JUPYTERHUB_SERVICE_NAME": EXTERNAL_SERVICE}  # fmt: skip
        listen = f"http://127.0.0.1:{self.hub.external_port}"
        command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "collect", "--config",
                   str(self.config), "--url", listen]  # fmt: skip
        self.runs += 1
        self.log = self.folder / f"collector-{self.runs}.log"
        self.process = Process(command, self.hub.tmp, env, self.log)

    def wait_up(self, timeout: float = 30) -> None:
        """Wait until the collector launched answers through the proxy."""
        schemas = f"services/{EXTERNAL_SERVICE}/api/telemetry/schemas"

        def up() -> bool:
            if self.process is None or self.process.process.poll() is not None:
                msg = f"the collector does not run: {log_tail(self.log)}"
                raise RuntimeError(msg)
            return 0 < self.hub.request("GET", schemas)[0] < 500  # 403 without a token

        wait_until(up, timeout, lambda: f"the collector did not start: {log_tail(self.log)}")

    @property
    def running(self) -> bool:
        """Return whether it was launched and has not exited."""
        return self.process is not None and self.process.process.poll() is None

    def stop(self) -> None:
        """Stop it as the hub stops a service (SIGINT: it writes what it accepted, then exits)."""
        process, self.process = self.process, None
        if process is not None:
            try:
                code = process.stop(signal.SIGINT)
            finally:
                process.kill()
            assert code == 0, log_tail(self.log)

    def kill(self) -> None:
        """Kill it if it still runs (after a failed test)."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _environ(path: Path) -> dict[str, str]:
    pairs = path.read_bytes().split(b"\0")
    return dict(p.decode("utf-8", "replace").partition("=")[::2] for p in pairs if b"=" in p)


@contextlib.contextmanager
def running_hub(
    tmp: Path, collector_config: Path, extra_config: str = "", database: str = ""
) -> Iterator[Hub]:
    """Yield a started hub; stop it and everything it started afterwards, even on failure."""
    hub = Hub(tmp, collector_config, extra_config, database=database)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()
