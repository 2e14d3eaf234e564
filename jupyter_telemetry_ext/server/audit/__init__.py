"""The execution audit: what code reached a kernel through this server, and how it ended.

`install` sets it up at start; `connection` watches the kernel websocket, `requests` reads the
messages, `pending` keeps the requests waiting for their reply, `execution` builds the events
and `recorder` numbers and records them.
"""
