"""Where HubEventHandler and HubAuditHandler log in the hub's process: in JupyterHub's log.

Their records (a store's outage, an action that could not be recorded, a start-up warning) come
from the package's loggers, which have no handler of their own: Python's last resort wrote
their bare message, without a level or a time, among the hub's formatted lines.
"""

from __future__ import annotations

import logging

PACKAGE_LOGGER = "jupyter_telemetry_ext"
HUB_LOGGER = "JupyterHub"  # the JupyterHub application's own logger (its class name)


def log_through_the_hub() -> None:
    """Hand the package's records to JupyterHub's logger (its handlers and format), unless
    something else took them already."""
    package = logging.getLogger(PACKAGE_LOGGER)
    if package.parent is logging.root and not package.handlers:
        package.parent = logging.getLogger(HUB_LOGGER)
