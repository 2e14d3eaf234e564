"""Inflating a gzip request body as it arrives, never beyond a size limit (no gzip bomb)."""

from __future__ import annotations

import zlib

from jupyter_telemetry_ext.core.errors import InflateError

GZIP_WBITS = 16 + zlib.MAX_WBITS


class Inflater:
    """Inflates one gzip stream chunk by chunk; at most `limit` bytes ever come out."""

    def __init__(self, limit: int, option: str = "TelemetryCollector.max_body_size") -> None:
        """Refuse to inflate more than `limit` bytes (the `option` named in the error)."""
        self.limit, self.size, self.option = limit, 0, option
        self._inflate = zlib.decompressobj(GZIP_WBITS)

    def feed(self, chunk: bytes) -> bytes:
        """Return what `chunk` inflates to; raise InflateError once the limit is passed."""
        try:
            out = self._inflate.decompress(chunk, self.limit - self.size + 1)
        except zlib.error:
            msg = "the body is not valid gzip (Content-Encoding: gzip)"
            raise InflateError(msg) from None
        self.size += len(out)
        if self.size > self.limit or self._inflate.unconsumed_tail:
            msg = (
                f"the request body inflates to more than {self.limit} bytes; the limit applies "
                f"to the inflated body ({self.option})"
            )
            raise InflateError(msg, 413)
        return out

    def finish(self) -> None:
        """Check that the gzip stream ended, with nothing after it; raise InflateError."""
        if not self._inflate.eof:
            msg = "the gzip body is cut short (Content-Encoding: gzip)"
            raise InflateError(msg)
        if self._inflate.unused_data:
            msg = "the gzip body has data after its end (one gzip member is accepted)"
            raise InflateError(msg)
