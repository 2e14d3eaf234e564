"""`python -m jupyter_telemetry_ext.cli`: the `jupyter telemetry` command."""

from .main import main

if __name__ == "__main__":
    main()
