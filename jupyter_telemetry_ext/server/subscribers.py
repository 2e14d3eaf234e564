"""How many websocket subscribers are open, per principal and in all, within their caps.

Each subscriber costs every recorded event a listener call and holds a buffer, so their number
is bounded: a principal over its share is refused with 429, the server over its total with 503.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jupyter_telemetry_ext.core.errors import SubscriberLimitError


@dataclass
class Subscribers:
    """The open subscribers of each principal; 0 for a cap means no limit."""

    total: int = 0
    per_principal: int = 0
    _open: dict[str, int] = field(default_factory=dict)
    _count: int = 0

    def join(self, principal: str) -> None:
        """Count a new subscriber of `principal`; raise SubscriberLimitError over a cap."""
        mine = self._open.get(principal, 0)
        if self.per_principal and mine >= self.per_principal:
            msg = (
                f"too many subscribers: at most {self.per_principal} websockets per user "
                "(TelemetryExtension.max_subscribers_per_user); close one first"
            )
            raise SubscriberLimitError(msg, 429)
        if self.total and self._count >= self.total:
            msg = (
                f"the server has its most subscribers, {self.total} "
                "(TelemetryExtension.max_subscribers); retry later"
            )
            raise SubscriberLimitError(msg, 503)
        self._open[principal] = mine + 1
        self._count += 1

    def leave(self, principal: str) -> None:
        """Count a subscriber of `principal` as closed."""
        mine = self._open.pop(principal, 0) - 1
        if mine > 0:
            self._open[principal] = mine
        self._count -= 1

    def __len__(self) -> int:
        """Return how many subscribers are open."""
        return self._count
