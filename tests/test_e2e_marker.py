"""The fast loop, `pytest -m "not e2e"`: a test not marked e2e starts no server and no browser."""

from __future__ import annotations

import time
from pathlib import Path
from pkgutil import resolve_name

import pytest

from tests.conftest import E2E_STARTS
from tests.servers import Server


def refused(target: str) -> bool:
    """Whether `target` (a dotted name in E2E_STARTS) is replaced by the refusal right now."""
    owner, name = target.rsplit(".", 1)
    # By name: pytest loads conftest.py as `conftest`, a module other than `tests.conftest`.
    return getattr(vars(resolve_name(owner))[name], "__name__", "") == "refuse_unmarked"


def test_a_test_not_marked_e2e_cannot_start_a_jupyter_server(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"mark it @pytest\.mark\.e2e"):
        Server(tmp_path)
    assert time.monotonic() - started < 1  # refused before a process was started


@pytest.mark.parametrize("target", E2E_STARTS)
def test_every_start_is_refused_outside_e2e(target: str) -> None:
    assert refused(target)


@pytest.mark.e2e
@pytest.mark.parametrize("target", E2E_STARTS)
def test_a_test_marked_e2e_may_start_them(target: str) -> None:
    assert not refused(target)
