"""Where events are written: JSON-lines files, OpenTelemetry, PostgreSQL."""
