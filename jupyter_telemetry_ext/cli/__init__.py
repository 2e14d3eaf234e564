"""The `jupyter telemetry` command line."""
