"""The kernel websocket connection, audited: it shows the audit what it sends to the kernel.

The audited class is made from the server's connection class (jupyter_server's
ZMQChannelsWebsocketConnection or an extension's subclass of it). Requests are seen where the
connection's session sends them to a kernel channel, after jupyter_server decided to pass them
on, in either websocket protocol; replies where the kernel's messages come back. Whatever the
audit does, the message goes through: a failure is logged once and counted. With
`audit_required` it is the other way round: every message waits in the connection's outbox
behind the requests sent before it on its channel, a request until its `requested` event is
durable, and a request whose event cannot be made durable is answered AuditUnavailable, never
sent; a debug_request is never sent (what the debugger evaluates would run unrecorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from traitlets import default

from jupyter_telemetry_ext.core.errors import AuditUnavailableError

from .execution import Client, ExecutionAudit
from .outbox import Held, Outbox
from .refusal import debug_refusal_frames, refusal_frames, refusal_text
from .requests import (
    DebugRequest,
    ExecuteRequest,
    an_id,
    reply_from_frames,
    request_from_frames,
    request_from_message,
)

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
KERNEL_CHANNELS = frozenset({"shell", "control"})  # ipykernel runs execute_request on both
# Requests one connection may have waiting for their audit events (`audit_required`); past it
# new ones are refused at once, so a flood while the sinks are slow cannot grow memory.
MAX_HELD = 1000
UserContext = Callable[[Any], Mapping[str, Any] | None]
Send = Callable[[], object]


class Unread:
    """A message on a kernel channel that the audit could not read."""


UNREAD = Unread()
Read = ExecuteRequest | DebugRequest | Unread | None


class AuditedSession(Session):
    """A session that tells its connection about each message it sends to a kernel channel."""

    connection: AuditedConnection | None = None

    def send(self, stream: Any, msg_or_type: Any, *args: Any, **kwargs: Any) -> Any:
        """Send a message (jupyter_server's legacy JSON protocol sends dicts this way)."""
        request = self._read(stream, msg_or_type, None)
        if self._holds():
            self._hold(stream, request, partial(super().send, stream, msg_or_type, *args, **kwargs))
            return None
        sent = super().send(stream, msg_or_type, *args, **kwargs)
        self._sent(stream, request)
        return sent

    def send_raw(self, stream: Any, msg_list: list[Any], *args: Any, **kwargs: Any) -> None:
        """Send packed frames (the v1 protocol passes the client's frames on as they are)."""
        request = self._read(stream, None, msg_list)
        if self._holds():
            send = partial(super().send_raw, stream, msg_list, *args, **kwargs)
            self._hold(stream, request, send)
            return
        super().send_raw(stream, msg_list, *args, **kwargs)
        self._sent(stream, request)

    def _holds(self) -> bool:
        """Return True when messages wait for their audit events (`audit_required`)."""
        return self.connection is not None and self.connection.audit.durability is not None

    def _hold(self, stream: Any, request: Read, send: Send) -> None:
        assert self.connection is not None  # noqa: S101 - _holds said so
        self.connection.audit_hold(stream, request, send)

    def _read(self, stream: Any, message: Any, frames: list[Any] | None) -> Read:
        if self.connection is None or getattr(stream, "channel", None) not in KERNEL_CHANNELS:
            return None
        try:
            if frames is not None:  # under audit_required a debug_request is held too
                return request_from_frames(frames, self.unpack, debug=self._holds())
            if isinstance(message, Mapping):
                return request_from_message(message, self.unpack, debug=self._holds())
        except Exception as e:  # the message goes through, unless audit_required
            self.connection.audit.recorder.failed("reading a request", e)
            return UNREAD
        return None

    def _sent(self, stream: Any, request: Read) -> None:
        if isinstance(request, ExecuteRequest) and self.connection is not None:
            self.connection.audit_sent(stream.channel, request)


class AuditedConnection(ZMQChannelsWebsocketConnection):
    """A kernel websocket connection whose execute requests and replies the audit sees."""

    audit: ClassVar[ExecutionAudit]
    _audit_client: Client | None = None
    _audit_outbox: Outbox | None = None

    def audit_hold(self, stream: Any, request: Read, send: Send) -> None:
        """Pass a message on once the audit event of every request before it on its channel,
        and its own, is durable; refuse a request whose event cannot be (`audit_required`),
        and every debug_request."""
        channel = getattr(stream, "channel", "")
        if isinstance(request, Unread):  # the kernel may run what the audit cannot read
            self.audit.refused("a message on a kernel channel that the audit cannot read")
            return
        if self._audit_outbox is None:
            self._audit_outbox = Outbox(self.audit.recorder.failed)
        if isinstance(request, DebugRequest):  # answered in its turn on the channel
            self.audit.refused("a debug_request (the debugger's evaluations are not audited)")
            self._audit_outbox.put(channel, Held(partial(self.audit_refuse_debug, channel,
                                                         request)))  # fmt: skip
            return
        if request is None:
            self._audit_outbox.put(channel, Held(partial(_send_open, stream, send)))
            return
        refuse = partial(self.audit_refuse, channel, request.header)
        if len(self._audit_outbox) >= MAX_HELD:  # a flood while the sinks are slow
            error = AuditUnavailableError(f"{MAX_HELD} requests of this connection wait for "
                                          "their audit events already")  # fmt: skip
            self._audit_outbox.put(channel, Held(_nothing, _failed(error), refuse))
            return

        def send_and_note() -> None:
            if _send_open(stream, send):
                self.audit_sent(channel, request)

        durable = self._audit_requested(channel, request)
        self._audit_outbox.put(channel, Held(send_and_note, durable, refuse))

    def _audit_requested(self, channel: str, request: ExecuteRequest) -> asyncio.Future[None]:
        """Record a request before it is sent; return a future done once its event is durable."""
        durability = self.audit.durability
        try:
            if durability is None:  # audit_required was turned off: nothing to wait for
                return _done()
            return self.audit.requested(durability, self._client(), channel, request)
        except Exception as e:  # fail closed: what cannot be recorded does not run
            self.audit.recorder.failed("recording a request", e)
            return _failed(AuditUnavailableError(f"the audit failed ({type(e).__name__})"))

    def audit_refuse(
        self, channel: str, header: Mapping[str, Any] | None, error: AuditUnavailableError
    ) -> None:
        """Answer a refused request (its `header`) as a kernel answers a failed one."""
        self.audit.refused(str(error))
        if channel not in self.channels:  # the connection closed meanwhile
            return
        text = refusal_text(error)
        for name, frames in refusal_frames(self.session, header, channel, text):
            stream = self.channels.get(name)
            if stream is not None:
                self.handle_outgoing_message(stream, frames)

    def audit_refuse_debug(self, channel: str, request: DebugRequest) -> None:
        """Answer a debug_request as a debugger that failed: the kernel never gets it."""
        for name, frames in debug_refusal_frames(self.session, request, channel):
            stream = self.channels.get(name)
            if stream is not None:
                self.handle_outgoing_message(stream, frames)

    @default("session")
    def _default_session(self) -> Session:
        session = AuditedSession(config=self.config)
        session.connection = self
        return session

    def audit_sent(self, channel: str, request: ExecuteRequest) -> None:
        """Show the audit a request that was sent to the kernel."""
        try:
            self.audit.sent(self._client(), channel, request)
        except Exception as e:  # never break the kernel connection
            self.audit.recorder.failed("noting a request", e)

    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        """Show the audit the kernel's execute replies, then pass every message on."""
        channel = stream if isinstance(stream, str) else getattr(stream, "channel", None)
        if channel in KERNEL_CHANNELS:
            try:
                frames = self.session.feed_identities(outgoing_msg)[1]
                reply = reply_from_frames(frames, self.session.unpack)
                if reply is not None:
                    self.audit.replied(self.kernel_id, channel, reply)
            except Exception as e:  # never break the kernel connection
                self.audit.recorder.failed("reading a reply", e)
        super().handle_outgoing_message(stream, outgoing_msg)

    def _client(self) -> Client:
        if self._audit_client is None:
            self._audit_client = self.audit_client()
        return self._audit_client

    def audit_client(self) -> Client:
        """Return what the audit records of this connection: kernel, session, protocol, user."""
        kind = "websocket-v1" if self.subprotocol == V1_PROTOCOL else "websocket-json"
        return Client(
            kernel_id=str(self.kernel_id),
            kernel_name=getattr(self.kernel_manager, "kernel_name", None),
            session_id=an_id(self.session.session),
            kind=kind,
            context=self.audit_context(self.websocket_handler),
        )

    @staticmethod
    def audit_context(handler: Any) -> Mapping[str, Any] | None:
        """Return the capsule fields the audit adds for the user of a websocket handler."""
        return None


def _send_open(stream: Any, send: Send) -> bool:
    """Send unless the channel closed meanwhile; return True when sent."""
    if stream.closed():
        return False
    send()
    return True


def _failed(error: BaseException) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _nothing() -> None:
    """Send nothing: the request is refused."""


def audited_class(base: type[Any], audit: ExecutionAudit, context: UserContext) -> type[Any]:
    """Return a subclass of the connection class `base` whose executions `audit` records,
    with the capsule fields `context` returns for the user of each connection."""
    namespace = {"audit": audit, "audit_context": staticmethod(context), "__module__": __name__}
    return type(f"Audited{base.__name__}", (AuditedConnection, base), namespace)
