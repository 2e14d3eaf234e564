"""URLs made safe to log, show or export: without credentials and without query values.

A collector URL may carry `user:password@` or `?token=...`, and a request's URI a `?token=` that
a client put there: none of it may reach a log line, a page or a metric label.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from .printable import printable

SECRET = "[secret]"  # noqa: S105 - what stands in for a value, as in jupyter_server
# Query arguments whose values are masked in an access log: any key that *contains* one of these
# (the list jupyter_server's access log scrubs).
SCRUBBED_KEYS = ("token", "auth", "key", "code", "state", "xsrf")


def safe_url(url: str) -> str:
    """Return `url` without its userinfo and fragment, each query value replaced by `[secret]`."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # e.g. a port that is not a number
        return "(unparsable URL)"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    query = "&".join(_masked(part) for part in parts.query.split("&")) if parts.query else ""
    return printable(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def scrub_uri(uri: str) -> str:
    """Return a request URI with the values of credential-like query arguments masked
    (`?token=abc` becomes `?token=[secret]`), the rest as it was."""
    path, sep, query = uri.partition("?")
    if not sep:
        return printable(uri)
    parts = query.split("&")
    for i, part in enumerate(parts):
        key = part.partition("=")[0].lower()
        if any(word in key for word in SCRUBBED_KEYS):
            parts[i] = _masked(part)
    return printable(path + "?" + "&".join(parts))


def _masked(part: str) -> str:
    """Return `key=[secret]` for `key=value`; a bare argument (no `=`) is masked whole."""
    key, sep, _ = part.partition("=")
    return f"{key}={SECRET}" if sep else SECRET
