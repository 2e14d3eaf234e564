"""The principal of a request: who it counts as for rate limits, event ids and subscribers.

jupyter_server makes up a new anonymous user (a random name) for each request authenticated by
the server's token without the login cookie, as an API client sends it, and for each request
when authentication is off. Keyed on that name, a script would never be limited and its retries
would be recorded twice. So the principal is:

- `user:<name>` when the identity provider named the user: JupyterHub's user, a custom
  provider's user, or the user a login cookie names (a browser keeps its cookie);
- `token:<digest>` when the user was made up for a request that presented the server's token:
  a keyed hash of the token presented, with a key that lives only in this process, so it is
  stable for the server's life and never the token itself;
- `anonymous` when the user was made up for a request that presented no token (authentication
  off): every such client is one principal.

The principal is never recorded nor logged. What is recorded as `__user__` is the request's
person: the identity provider's user when it names one (JupyterHub's, a custom provider's), and
the user the server runs for when jupyter_server's own provider made the user up (a random name
for a token or a login cookie, which names nobody): the same user its consent decisions are
taken for, and `erase --user` finds.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import JupyterHandler
from tornado.web import RequestHandler

ANONYMOUS = "anonymous"
_MADE_UP = "_telemetry_made_up_user"  # the handler attribute naming the user made up for it
_OWN_PROVIDERS = IdentityProvider.__module__  # jupyter_server's providers: users made up
_KEY = secrets.token_bytes(32)  # this process's key for token digests


def watch_made_up_users(provider: IdentityProvider) -> None:
    """Mark on each handler the anonymous user that `provider` makes up for its request."""
    generate = provider.generate_anonymous_user
    if getattr(generate, _MADE_UP, False):
        return  # already watched (another extension app on the same server)

    def generate_and_mark(handler: RequestHandler) -> User:
        user = generate(handler)
        setattr(handler, _MADE_UP, user)
        return user

    setattr(generate_and_mark, _MADE_UP, True)
    provider.generate_anonymous_user = generate_and_mark  # type: ignore[method-assign]


def principal(handler: JupyterHandler) -> str:
    """Return the principal of an authenticated request (see the module's docstring)."""
    user = handler.current_user
    if getattr(handler, _MADE_UP, None) is not user:
        return f"user:{user.username}"
    provider = handler.identity_provider
    if provider.is_token_authenticated(handler):
        token = provider.get_token(handler)
        if token:
            return f"token:{token_digest(token)}"
    return ANONYMOUS


def person(handler: JupyterHandler) -> str:
    """Return the name recorded for an authenticated request's user (see the module's docstring)."""
    name: str = handler.current_user.username
    if type(handler.identity_provider).__module__ == _OWN_PROVIDERS:
        return server_user() or name
    return name


def server_user() -> str | None:
    """Return the user this server runs for: `JUPYTERHUB_USER`, else the OS user (or None)."""
    try:
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except (OSError, KeyError):
        return None


def token_digest(token: str) -> str:
    """Return a keyed hash (BLAKE2b MAC) of a token: stable in this process, meaningless outside."""
    return hashlib.blake2b(token.encode(), key=_KEY, digest_size=16).hexdigest()
