"""The docs' library examples (docs/library.md) run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).parent.parent / "docs" / "library.md"


def runnable_blocks() -> list[str]:
    text = LIBRARY.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    return [b for b in blocks if "from jupyter_telemetry_ext import" in b]


def run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_router_example(tmp_path: Path) -> None:
    block = next(b for b in runnable_blocks() if "EventRouter" in b)
    result = run(block, tmp_path)
    assert result.returncode == 0, result.stderr
    admin = json.loads((tmp_path / "all-events.log").read_text())
    public = json.loads((tmp_path / "public-events.log").read_text())
    assert (admin["path"], admin["username"]) == ("/home/ada/x.ipynb", "ada")
    assert (public["action"], public["path"], public["username"]) == ("open", None, None)
    assert "'path': None" in result.stdout


def test_record_and_instrument_example(tmp_path: Path) -> None:
    block = next(b for b in runnable_blocks() if "@instrument" in b)
    result = run(block, tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["action"], e["name"]) for e in events] == [("say-hello", "Ada"), ("greet", "Grace")]
