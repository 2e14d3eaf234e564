"""Quickstart config: record the shipped frontend events as JSON lines in telemetry-events.jsonl.

Run from any folder (the log is written there):

    jupyter server --config=path/to/examples/jupyter_server_config.py
"""

import logging.handlers

c = get_config()  # noqa: F821 (provided by the config loader)

# pip install enables the extension; saying it here keeps this file self-contained.
c.ServerApp.jpserver_extensions = {"jupyter_telemetry_ext": True}

# One JSON object per line, rotated at 10 MB, keeping 5 old files.
c.EventLog.handlers = [
    logging.handlers.RotatingFileHandler(
        "telemetry-events.jsonl", maxBytes=10_000_000, backupCount=5, encoding="utf-8"
    )
]

# Nothing is recorded unless allowed here. A schema id alone keeps only the properties labelled
# `unrestricted`: notebook paths, cell source and error messages are recorded as null.
SHIPPED = "https://events.jupyter.org/jupyter_telemetry_ext/"
c.EventLog.allowed_schemas = {
    SHIPPED + "notebook": {},
    SHIPPED + "cell": {},
    SHIPPED + "command": {},
    SHIPPED + "session": {},
    # To keep personal data too, name its category, e.g.:
    # SHIPPED + "notebook": {"allowed_categories": ["user-identifiable-information"]},
}

# Optional: more schema folders, besides share/jupyter/telemetry/schemas in the Jupyter paths.
# c.TelemetryExtension.schema_paths = ["/srv/telemetry-schemas"]
