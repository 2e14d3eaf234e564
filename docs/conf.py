"""Sphinx configuration of the jupyter_telemetry_ext docs (MyST Markdown, pydata-sphinx-theme)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package from this checkout, as the tests use it
sys.path.insert(0, str(ROOT / "tools"))  # config_reference: the generated option reference

from jupyter_telemetry_ext import __version__  # noqa: E402 - after the path is set

project = "jupyter_telemetry_ext"
author = "jupyter_telemetry_ext contributors"
copyright = "jupyter_telemetry_ext contributors"  # noqa: A001 - Sphinx reads this name
release = version = __version__

extensions = ["myst_parser", "sphinxcontrib.openapi", "config_reference"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 4

html_theme = "pydata_sphinx_theme"
html_title = "jupyter_telemetry_ext"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
