"""The execution audit: what code reached a kernel through this server, and how it ended.

`install` sets it up at start; `connection` watches the kernel websocket, `requests` reads the
messages, `pending` keeps the requests waiting for their reply, `execution` builds the events
and `recorder` numbers and records them. With `audit_required`, `required` checks at start that
events can be made durable, `durability` makes them so, `outbox` holds each connection's
messages until then and `refusal` answers a request that cannot be audited.
"""
