"""Drop-in modules for code moving from other Jupyter telemetry libraries, on this package."""
