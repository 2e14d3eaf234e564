"""The release configuration: one version for npm and PyPI, and what jupyter-releaser reads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
BUMP = ROOT / "tools" / "bump_version.py"
PACKAGE = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))


def bump(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the version command as jupyter-releaser does, in a copy of the checkout's files."""
    return subprocess.run(
        [sys.executable, str(BUMP), *args], cwd=root, capture_output=True, text=True, check=False
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A folder with this checkout's package.json and _version.py."""
    (tmp_path / "jupyter_telemetry_ext").mkdir()
    shutil.copy(ROOT / "package.json", tmp_path / "package.json")
    version = ROOT / "jupyter_telemetry_ext" / "_version.py"
    shutil.copy(version, tmp_path / "jupyter_telemetry_ext" / "_version.py")
    return tmp_path


def versions(root: Path) -> tuple[str, str]:
    """The Python and the npm version of a copy."""
    text = (root / "jupyter_telemetry_ext" / "_version.py").read_text(encoding="utf-8")
    npm = json.loads((root / "package.json").read_text(encoding="utf-8"))["version"]
    return text.split("__version__ = ")[1].strip().strip('"'), npm


def test_the_checkout_has_one_version_for_both_packages() -> None:
    """package.json and _version.py say the same release."""
    done = bump(ROOT, "--check")
    assert done.returncode == 0, done.stdout


def test_bumps_write_both_files(copy: Path) -> None:
    """patch, an explicit pre-release, next and minor: PEP 440 in Python, semver in npm."""
    start = versions(copy)[0]
    major, minor, micro = (int(n) for n in start.split(".")[:3])
    assert bump(copy, "patch").stdout.strip() == f"{major}.{minor}.{micro + 1}"
    assert versions(copy) == (f"{major}.{minor}.{micro + 1}",) * 2
    target = f"{major}.{minor + 1}.0"
    assert bump(copy, f"{target}rc1").returncode == 0
    assert versions(copy) == (f"{target}rc1", f"{target}-rc.1")
    bump(copy, "next")
    assert versions(copy) == (f"{target}rc2", f"{target}-rc.2")
    bump(copy, "patch")  # a pre-release's patch is its final release
    assert versions(copy) == (target, target)
    assert bump(copy, "--check").returncode == 0
    text = (copy / "package.json").read_text(encoding="utf-8")
    assert text == (ROOT / "package.json").read_text(encoding="utf-8").replace(
        f'"version": "{start}"', f'"version": "{target}"', 1
    )


def test_a_bad_version_changes_nothing_and_says_why(copy: Path) -> None:
    """A spec that is no release version fails with a message; a disagreement fails --check."""
    before = versions(copy)
    done = bump(copy, "1.0")
    assert done.returncode == 1
    assert "not a release version" in done.stderr
    assert versions(copy) == before
    package = copy / "package.json"
    package.write_text(package.read_text(encoding="utf-8").replace(before[1], "9.9.9", 1))
    done = bump(copy, "--check")
    assert done.returncode == 1
    assert "package.json says 9.9.9" in done.stdout


def test_the_npm_package_ships_types_and_shares_its_token() -> None:
    """What other extensions build against: types, public access, the builder's own sharing."""
    assert PACKAGE["types"] == "lib/index.d.ts"
    assert "lib/*.{d.ts,js,js.map}" in PACKAGE["files"]
    assert PACKAGE["publishConfig"] == {"access": "public"}
    # The builder shares a labextension's own package as a singleton; declaring it again in
    # sharedPackages is refused.
    assert PACKAGE["name"] not in PACKAGE["jupyterlab"].get("sharedPackages", {})
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["jupyter_telemetry_ext/labextension"].endswith(f"labextensions/{PACKAGE['name']}")


def test_jupyter_releaser_config() -> None:
    """The version command, the npm build before packing, and the changelog's markers."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    releaser = pyproject["tool"]["jupyter-releaser"]
    assert releaser["options"]["version_cmd"] == "python tools/bump_version.py"
    assert "jlpm build:prod" in releaser["hooks"]["before-build-npm"]
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    for marker in ("<!-- <START NEW CHANGELOG ENTRY> -->", "<!-- <END NEW CHANGELOG ENTRY> -->"):
        assert changelog.count(marker) == 1
    workflows = ROOT / ".github" / "workflows"
    prep = (workflows / "prep-release.yml").read_text(encoding="utf-8")
    publish = (workflows / "publish-release.yml").read_text(encoding="utf-8")
    assert "jupyter_releaser/.github/actions/prep-release@v2" in prep
    assert "jupyter_releaser/.github/actions/finalize-release@v2" in publish
    assert "id-token: write" in publish  # trusted publishing on PyPI and npm
