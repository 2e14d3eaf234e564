"""Set the release version in both packages: the Python one and the npm one.

`python tools/bump_version.py SPEC` where SPEC is a version (`0.2.0`, `0.2.0rc1`) or `patch`,
`minor`, `major` or `next` (the next pre-release, or the next patch after a final release).
`jupyter_telemetry_ext/_version.py` gets the PEP 440 form, `package.json` the semver form
(`0.2.0rc1` is `0.2.0-rc.1`): npm and PyPI publish the same release. `--check` changes nothing
and exits 1 when the two files disagree. Run from the checkout's root, as jupyter-releaser runs
its `version_cmd`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

PYTHON = Path("jupyter_telemetry_ext") / "_version.py"
NPM = Path("package.json")
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:(a|b|rc)(\d+))?$")
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-(alpha|beta|rc)\.(\d+))?$")
TO_NPM = {"a": "alpha", "b": "beta", "rc": "rc"}
LINE = re.compile(r'^__version__ = "([^"]*)"$', re.MULTILINE)


def npm_form(version: str) -> str:
    """The semver form npm publishes of a PEP 440 release version."""
    match = VERSION.match(version)
    if match is None:
        msg = f"not a release version (X.Y.Z, or X.Y.Z with a1, b1 or rc1): {version!r}"
        raise ValueError(msg)
    major, minor, micro, pre, number = match.groups()
    return f"{major}.{minor}.{micro}" + (f"-{TO_NPM[pre]}.{number}" if pre else "")


def python_form(semver: str) -> str:
    """The PEP 440 form of a semver version npm publishes."""
    match = SEMVER.match(semver)
    if match is None:
        msg = f"package.json: not a release version: {semver!r}"
        raise ValueError(msg)
    major, minor, micro, pre, number = match.groups()
    short = {name: key for key, name in TO_NPM.items()}
    return f"{major}.{minor}.{micro}" + (f"{short[pre]}{number}" if pre else "")


def current(root: Path) -> str:
    """The version `_version.py` says."""
    match = LINE.search((root / PYTHON).read_text(encoding="utf-8"))
    if match is None:
        msg = f"{PYTHON}: no __version__ line"
        raise ValueError(msg)
    return match.group(1)


def resolve(spec: str, version: str) -> str:
    """The version a spec asks for, from the current one."""
    match = VERSION.match(version)
    if match is None:
        msg = f"{PYTHON}: not a release version: {version!r}"
        raise ValueError(msg)
    major, minor, micro = (int(part) for part in match.groups()[:3])
    pre, number = match.group(4), match.group(5)
    if spec == "next" and pre:
        return f"{major}.{minor}.{micro}{pre}{int(number) + 1}"
    if spec in {"next", "patch"}:
        return f"{major}.{minor}.{micro + (0 if pre else 1)}"
    if spec == "minor":
        return f"{major}.{minor + 1}.0"
    if spec == "major":
        return f"{major + 1}.0.0"
    npm_form(spec)  # refuses what is not a release version
    return spec


def write(root: Path, version: str) -> None:
    """Write a version into `_version.py` and `package.json`."""
    semver = npm_form(version)
    path = root / PYTHON
    text = path.read_text(encoding="utf-8")
    path.write_text(LINE.sub(f'__version__ = "{version}"', text), encoding="utf-8")
    package = root / NPM
    text = package.read_text(encoding="utf-8")
    old = json.loads(text)["version"]
    # Replace the one field in place: the rest of package.json keeps its layout.
    package.write_text(
        text.replace(f'"version": "{old}"', f'"version": "{semver}"', 1), encoding="utf-8"
    )


def disagreement(root: Path) -> str | None:
    """Why the two packages' versions differ; None when they are the same release."""
    python = current(root)
    semver = json.loads((root / NPM).read_text(encoding="utf-8"))["version"]
    if python_form(semver) != python:
        return f"{PYTHON} says {python}, {NPM} says {semver} (expected {npm_form(python)})"
    return None


def main(argv: list[str]) -> int:
    """Set the version a spec asks for, or with `--check` compare the two files."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path.cwd()
    try:
        if argv == ["--check"]:
            problem = disagreement(root)
            print(problem or f"version {current(root)}: {PYTHON} and {NPM} agree")
            return 1 if problem else 0
        version = resolve(argv[0], current(root))
        write(root, version)
    except (OSError, ValueError) as e:
        print(f"bump_version: {e}", file=sys.stderr)
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
