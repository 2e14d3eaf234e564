"""Reading one posted event's envelope: the client id's rules, on the fast path and off it."""

from __future__ import annotations

import json

import pytest

from jupyter_telemetry_ext.core.errors import IngestError
from jupyter_telemetry_ext.server.wire import MAX_ID_LENGTH, Limits, parse_body, parse_event

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


def _body(sizes: list[int]) -> bytes:
    events = [{"schema_id": "s", "version": 1, "data": {"x": "x" * n}} for n in sizes]
    return json.dumps({"events": events}).encode()


@pytest.mark.parametrize(
    ("sizes", "measured", "refused"),
    [
        pytest.param([100] * 40, False, [], id="every-event-small"),
        pytest.param([10] * 10 + [900], True, [], id="one-event-near-the-limit"),
        pytest.param([10] * 10 + [1000], True, [10], id="one-event-over-the-limit"),
    ],
)
def test_events_of_a_large_body_are_measured_only_when_a_run_of_them_is_large(
    sizes: list[int], measured: bool, refused: list[int]
) -> None:
    """A batch body over the event limit: runs of events within the limit clear every event
    in them at once; otherwise each is measured, and only those over it are refused (413)."""
    limits = Limits(body=1 << 20, batch=500, event=1000)
    body = _body(sizes)
    assert len(body) > limits.event
    posted = parse_body(body, limits)
    assert posted.limits.measure is measured
    for i, item in enumerate(posted.events):
        if i in refused:
            with pytest.raises(IngestError, match="max_event_size") as e:
                parse_event(item, posted.limits)
            assert e.value.status == 413
        else:
            parse_event(item, posted.limits)


@pytest.mark.parametrize(
    ("data", "reserved_keys"),
    [('{"a": {"b_": "_x"}}', False), ('{"a": "x\\n_y"}', False), ('{"a": {"__b": 1}}', True),
     ('{"a": "x__"}', True), ('{"a": ["__"]}', True), ('{"\\u005f_b": 1}', True),
     ('{"_\\u005Fb": 1}', True)],
)  # fmt: skip
def test_a_body_whose_text_has_no_reserved_key_spares_the_check(
    data: str, reserved_keys: bool
) -> None:
    """Only a body with `__` or an escaped underscore can hold a `__` key: its events are
    checked for one; the others' cannot hold one."""
    body = f'{{"events": [{{"schema_id": "a/b", "version": 1, "data": {data}}}]}}'.encode()
    posted = parse_body(body, Limits())
    assert json.loads(body)["events"] == posted.events
    assert parse_event(posted.events[0], posted.limits).reserved_keys is reserved_keys
