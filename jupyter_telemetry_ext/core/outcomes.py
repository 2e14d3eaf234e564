"""What became of an event: one word for each outcome, the same everywhere.

The EventLog counts events by these words, the Prometheus metric labels them, failure
descriptions name them (`outcome`), and the REST replies give one per posted event (`status`).
"""

from __future__ import annotations

RECORDED = "recorded"  # written to the handlers (or taken by a forwarding tap)
FILTERED = "filtered"  # the allow-list does not record it
SAMPLED_OUT = "sampled_out"  # dropped by `EventLog.sampling`
REJECTED = "rejected"  # refused: invalid, oversized, not open to the poster
DUPLICATE = "duplicate"  # an event id recorded already, within the duplicate window
RATE_LIMITED = "rate_limited"  # a post over the rate limit
SINK_FAILURE = "sink_failure"  # a handler did not write it
QUEUE_FULL = "queue_full"  # the background writer's queue (or the forwarding spool) is full
ERASED = "erased"  # an event of a user erased since it happened: dropped, never written
NO_CONSENT = "no_consent"  # a study covering it has no consent of the user (see `studies`)

OUTCOMES = (
    RECORDED,
    FILTERED,
    SAMPLED_OUT,
    REJECTED,
    DUPLICATE,
    RATE_LIMITED,
    SINK_FAILURE,
    QUEUE_FULL,
    ERASED,
    NO_CONSENT,
)
# The outcomes a POST reply gives an event (its `status`); a batch reply counts each of them.
# An event refused for a full queue is `rejected` there (its reply is a 503, or its error says so);
# one dropped for an erasure is `filtered` (final for every forwarder, and it names nobody).
REPLY_OUTCOMES = (RECORDED, FILTERED, SAMPLED_OUT, NO_CONSENT, DUPLICATE, REJECTED)
