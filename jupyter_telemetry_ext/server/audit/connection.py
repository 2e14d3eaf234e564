"""The kernel websocket connection, audited: it shows the audit what it sends to the kernel.

The audited class is made from the server's connection class (jupyter_server's
ZMQChannelsWebsocketConnection or an extension's subclass of it). Requests are seen where the
connection's session sends them to a kernel channel, after jupyter_server decided to pass them
on, in either websocket protocol; replies where the kernel's messages come back. Whatever the
audit does, the message goes through: a failure is logged once and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from traitlets import default

from .execution import Client, ExecutionAudit
from .requests import (
    ExecuteRequest,
    an_id,
    reply_from_frames,
    request_from_frames,
    request_from_message,
)

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
KERNEL_CHANNELS = frozenset({"shell", "control"})  # ipykernel runs execute_request on both
UserContext = Callable[[Any], Mapping[str, Any] | None]


class AuditedSession(Session):
    """A session that tells its connection about each message it sends to a kernel channel."""

    connection: AuditedConnection | None = None

    def send(self, stream: Any, msg_or_type: Any, *args: Any, **kwargs: Any) -> Any:
        """Send a message (jupyter_server's legacy JSON protocol sends dicts this way)."""
        request = self._read(stream, msg_or_type, None)
        sent = super().send(stream, msg_or_type, *args, **kwargs)
        self._sent(stream, request)
        return sent

    def send_raw(self, stream: Any, msg_list: list[Any], *args: Any, **kwargs: Any) -> None:
        """Send packed frames (the v1 protocol passes the client's frames on as they are)."""
        request = self._read(stream, None, msg_list)
        super().send_raw(stream, msg_list, *args, **kwargs)
        self._sent(stream, request)

    def _read(self, stream: Any, message: Any, frames: list[Any] | None) -> ExecuteRequest | None:
        if self.connection is None or getattr(stream, "channel", None) not in KERNEL_CHANNELS:
            return None
        try:
            if frames is not None:
                return request_from_frames(frames, self.unpack)
            if isinstance(message, Mapping):
                return request_from_message(message, self.unpack)
        except Exception as e:  # the message must go through whatever happens
            self.connection.audit.recorder.failed("reading a request", e)
        return None

    def _sent(self, stream: Any, request: ExecuteRequest | None) -> None:
        if request is not None and self.connection is not None:
            self.connection.audit_sent(stream.channel, request)


class AuditedConnection(ZMQChannelsWebsocketConnection):
    """A kernel websocket connection whose execute requests and replies the audit sees."""

    audit: ClassVar[ExecutionAudit]
    _audit_client: Client | None = None

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


def audited_class(base: type[Any], audit: ExecutionAudit, context: UserContext) -> type[Any]:
    """Return a subclass of the connection class `base` whose executions `audit` records,
    with the capsule fields `context` returns for the user of each connection."""
    namespace = {"audit": audit, "audit_context": staticmethod(context), "__module__": __name__}
    return type(f"Audited{base.__name__}", (AuditedConnection, base), namespace)
