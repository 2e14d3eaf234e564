"""Request bodies sent with `Content-Encoding: gzip`: decompressed within the body limit.

Forwarding servers gzip their batches; the limit applies to the decompressed size, so that a
small compressed body cannot expand into a large one (a "zip bomb": 413 as soon as it passes).
"""

from __future__ import annotations

import zlib

from .ingest import IngestError, Limits, Posted, body_too_large, parse_body

ENCODINGS = ("", "identity", "gzip")
GZIP_WBITS = 31  # zlib's window bits for the gzip container


def check_encoding(encoding: str) -> None:
    """Raise IngestError (415) for a Content-Encoding other than gzip or none."""
    if encoding not in ENCODINGS:
        msg = f"Content-Encoding must be gzip or absent (got {encoding[:32]!r})"
        raise IngestError(msg, 415)


def decoded(body: bytes, encoding: str, limits: Limits) -> bytes:
    """Return the body decompressed; raise IngestError: 413 past the limit, 400 when broken."""
    if encoding != "gzip":
        return body
    inflater = zlib.decompressobj(GZIP_WBITS)
    try:
        data = inflater.decompress(body, limits.body + 1)
    except zlib.error:
        msg = "the body is not valid gzip (Content-Encoding: gzip)"
        raise IngestError(msg) from None
    if len(data) > limits.body or inflater.unconsumed_tail:
        raise body_too_large(len(data), limits)
    if not inflater.eof or inflater.unused_data:
        msg = "the gzip body is truncated or has data after its end (Content-Encoding: gzip)"
        raise IngestError(msg)
    return data


def parse_encoded(body: bytes, encoding: str, limits: Limits) -> Posted:
    """Return the posted event or batch of a body in `encoding`; raise IngestError."""
    return parse_body(decoded(body, encoding, limits), limits)
