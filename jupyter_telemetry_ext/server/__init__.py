"""The Jupyter server extension: its routes, reading posts, the transparency page."""
