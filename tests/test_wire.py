"""Reading one posted event's envelope: the client id's rules, on the fast path and off it."""

from __future__ import annotations

import pytest

from jupyter_telemetry_ext.core.errors import IngestError
from jupyter_telemetry_ext.server.wire import MAX_ID_LENGTH, Limits, parse_event

EVENT = {"schema_id": "a/b", "version": 1, "data": {}}


@pytest.mark.parametrize(
    "client_id",
    ["0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5bd9cb469fa16570867728950e", "a",
     "A_b-9", "x" * MAX_ID_LENGTH],
)  # fmt: skip
def test_ids_of_letters_digits_dashes_and_underscores_are_kept(client_id: str) -> None:
    """A UUID, its hex, and any 1 to 64 of [A-Za-z0-9_-] are the event's id."""
    assert parse_event({**EVENT, "id": client_id}, Limits()).client_id == client_id


@pytest.mark.parametrize(
    "client_id",
    ["", "x" * (MAX_ID_LENGTH + 1), "é1", "١٢٣", "\uff41\uff42", "a b", "a/b", "a\n",
     12, True, ["a"]],
)  # fmt: skip
def test_other_ids_are_refused_without_their_value(client_id: object) -> None:
    """Non-ASCII letters and digits, other characters, lengths and types: 400 naming `id`."""
    with pytest.raises(IngestError) as refused:
        parse_event({**EVENT, "id": client_id}, Limits())
    assert (refused.value.status, refused.value.field) == (400, "id")
    if isinstance(client_id, str) and client_id:
        assert client_id not in str(refused.value)
