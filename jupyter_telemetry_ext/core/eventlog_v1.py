"""An EventLog writing capsule metadata version 1, as jupyter_events and jupyter-telemetry do."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import capsule as capsules
from .capsule import Plan
from .event_keys import EventKey
from .eventlog import EventLog

METADATA_VERSION_1 = 1


class MetadataV1EventLog(EventLog):
    """Our EventLog (allow-list, redaction, sinks) writing `__metadata_version__: 1`."""

    def _record(
        self,
        plan: Plan,
        event: Mapping[str, Any],
        timestamp: datetime | None,
        context: Mapping[str, Any] | None = None,
        encode: capsules.Encoder = capsules.encode,
        *,
        key: EventKey | None = None,
    ) -> dict[str, Any] | None:
        def encode_v1(value: Mapping[str, Any], schema: Any) -> str:
            if "__metadata_version__" in value and isinstance(value, dict):
                value["__metadata_version__"] = METADATA_VERSION_1
            return encode(value, schema)

        return super()._record(plan, event, timestamp, context, encode_v1, key=key)
