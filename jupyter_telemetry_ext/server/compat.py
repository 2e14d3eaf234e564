"""What jupyter_server versions older than the newest lack, supplied here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from tornado import web

Method = TypeVar("Method", bound=Callable[..., Any])

try:
    from jupyter_server.auth.decorator import ws_authenticated
except ImportError:  # jupyter_server < 2.13: its own websockets checked the user in the handler

    def ws_authenticated(method: Method) -> Method:
        """Refuse (403) a websocket request without an authenticated user, as 2.13's does."""

        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.current_user is None:
                self.log.warning("Couldn't authenticate WebSocket connection")
                raise web.HTTPError(403)
            return method(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]


__all__ = ["ws_authenticated"]
