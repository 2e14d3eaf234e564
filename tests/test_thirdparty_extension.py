"""A third-party JupyterLab extension builds against this checkout's npm package and records.

As an extension author does today: `npm pack` this checkout, depend on the tarball, build with
`@jupyter/builder`, then run real JupyterLab with both labextensions in headless Chromium; the
event the third-party plugin records through the shared ITelemetry lands in the sink.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.labs import NEEDS_CHROMIUM, TOKEN, Lab, chromium_page, running_lab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "thirdparty_ext"
ACTIVATED = "https://events.example.org/telemetry-thirdparty-example/activated"
PACKAGE = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))
# Our token's description: in the third party's bundle only if it bundled its own copy.
TOKEN_TEXT = "Records telemetry events and posts them"

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.e2e,
    NEEDS_CHROMIUM,
]


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a build command; fail with its output when it fails."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def jlpm() -> str:
    """JupyterLab's bundled yarn, from the environment running the tests."""
    found = shutil.which("jlpm", path=str(Path(sys.executable).parent)) or shutil.which("jlpm")
    assert found, "jlpm not found: pip install jupyterlab"
    return found


def pack(tmp: Path) -> Path:
    """`npm pack` this checkout (its TypeScript compiled first) into tmp; the tarball."""
    run([jlpm(), "build:lib"], ROOT)
    npm = shutil.which("npm")
    assert npm, "npm not found: Node.js 20 or later ships it"
    name = run([npm, "pack", "--pack-destination", str(tmp)], ROOT).strip().splitlines()[-1]
    return tmp / name


@pytest.fixture(scope="module")
def thirdparty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example extension built against the packed checkout: a Jupyter data folder."""
    tmp = tmp_path_factory.mktemp("thirdparty")
    tarball = pack(tmp)
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert {"package/lib/index.d.ts", "package/lib/tokens.d.ts", "package/lib/index.js"} <= set(
        names
    ), names

    source = tmp / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("node_modules", "lib"))
    package = json.loads((source / "package.json").read_text(encoding="utf-8"))
    package["dependencies"][PACKAGE["name"]] = f"file:../{tarball.name}"
    (source / "package.json").write_text(json.dumps(package, indent=2), encoding="utf-8")
    # The checkout's lock pins the shared dependencies to the versions its own build uses, so
    # that yarn takes them from its cache; only the tarball is new.
    for name in ("yarn.lock", ".yarnrc.yml"):
        shutil.copy(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["YARN_ENABLE_IMMUTABLE_INSTALLS"] = "false"
    run([jlpm(), "install"], source, env)
    installed = source / "node_modules" / PACKAGE["name"]
    assert (installed / "lib" / "tokens.d.ts").is_file()
    run([jlpm(), "tsc"], source)
    builder = shutil.which("jupyter-builder", path=str(Path(sys.executable).parent))
    assert builder, "jupyter-builder not found: pip install -e '.[test]'"
    run([builder, "build", "."], source)

    output = source / "labextension"
    built = json.loads((output / "package.json").read_text(encoding="utf-8"))
    assert built["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    bundles = [path.read_text(encoding="utf-8") for path in (output / "static").glob("*.js")]
    assert not [text for text in bundles if TOKEN_TEXT in text], "ITelemetry was bundled"

    data = tmp / "data"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / package["name"]).symlink_to(output)
    return data


@pytest.fixture
def lab(tmp_path: Path, thirdparty: Path) -> Iterator[Lab]:
    """JupyterLab with this checkout's client and the example extension and its schema."""
    config = f"c.TelemetryExtension.schema_paths = [{str(EXAMPLE / 'schemas')!r}]\n"
    with running_lab(
        tmp_path, [ACTIVATED], checkout=True, config_lines=config, data_paths=[thirdparty]
    ) as lab:
        yield lab


def test_a_thirdparty_extension_records_through_the_shared_client(lab: Lab) -> None:
    """The example's plugins record through our ITelemetry, required (one token object) or
    found by the labextension's name, and through the REST API; a same-named token is not it."""
    with chromium_page(playwright) as page:
        errors: list[str] = []
        page.on(
            "console", lambda m: errors.append(m.text) if m.type in {"error", "warning"} else None
        )
        page.goto(f"{lab.url}lab?token={TOKEN}")
        events = {
            action: lab.wait_for(
                lambda e, action=action: e["__schema__"] == ACTIVATED and e["action"] == action,
                f"third-party {action} event",
            )
            for action in ("activated", "by-name", "rest")
        }
    assert events["activated"]["accepts_method"] is True
    assert events["by-name"]["same_name_token_resolves"] is False
    assert "__client_id__" in events["activated"]  # the client's id: it came through ITelemetry
    assert not [text for text in errors if "telemetry-thirdparty-example" in text], errors
