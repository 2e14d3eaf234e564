"""The collector's access log: tornado's, with credentials in query strings masked.

A client may authenticate with `?token=...` (HubAuth accepts it), and the hub's OAuth redirect
carries `?code=...&state=...`: the lines tornado would log (each request, each refused one, each
uncaught exception) show them to whoever reads the log. Values of `token`, `auth`, `key`,
`code`, `state` and `xsrf` arguments are written as `[secret]`, as jupyter_server's access log
does.
"""

from __future__ import annotations

from types import TracebackType

from tornado import web
from tornado.log import access_log, app_log

from jupyter_telemetry_ext.core.redact_url import scrub_uri


def log_request(handler: web.RequestHandler) -> None:
    """Log one finished request as tornado does (`status method uri (ip) time`), URI scrubbed."""
    status = handler.get_status()
    if status < 400:
        log = access_log.info
    elif status < 500:
        log = access_log.warning
    else:
        log = access_log.error
    request = handler.request
    log("%d %s %s (%s) %.2fms", status, request.method, scrub_uri(request.uri or ""),
        request.remote_ip, 1000.0 * request.request_time())  # fmt: skip


class ScrubbedLogs(web.RequestHandler):
    """A handler whose error logs (refusals, uncaught exceptions) show the URI scrubbed."""

    def _request_summary(self) -> str:
        request = self.request
        return f"{request.method} {scrub_uri(request.uri or '')} ({request.remote_ip})"

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Log as tornado does, but never the request's repr (it holds the URI unscrubbed)."""
        if isinstance(value, web.HTTPError):
            super().log_exception(typ, value, tb)
            return
        app_log.error("Uncaught exception %s", self._request_summary(),
                      exc_info=(typ, value, tb))  # type: ignore[arg-type]  # fmt: skip
