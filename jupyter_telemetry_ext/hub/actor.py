"""Who made a request to the hub (a user or a service, by a token, a cookie or a login), and
whose server an OAuth authorization is for."""

from __future__ import annotations

from typing import Any

from tornado import web

from .routes_named import NAME_LIMIT, TOKEN_ID


def actor_of(handler: web.RequestHandler) -> dict[str, Any]:
    """Return who made the request: a user or a service, by a token (its id), a cookie or a
    login."""
    try:
        who = handler.current_user
    except (web.HTTPError, RuntimeError):  # never identified (e.g. a 405 before prepare)
        who = None
    name = getattr(who, "name", None)
    if not isinstance(name, str):
        return {"actor": None, "actor_service": None, "actor_kind": "none",
                "actor_via": "none", "actor_token_id": None}  # fmt: skip
    via, token_id = _token_of(handler, who)
    service = _is_service(who)
    return {
        "actor": None if service else name[:NAME_LIMIT],
        "actor_service": name[:NAME_LIMIT] if service else None,
        "actor_kind": "service" if service else "user",
        "actor_via": via,
        "actor_token_id": token_id,
    }


def _token_of(handler: web.RequestHandler, who: object) -> tuple[str, str | None]:
    """Return how the request was identified ("token", "cookie" or "login": a password in its
    body) and the token's id (a12)."""
    from sqlalchemy.exc import SQLAlchemyError

    get_token = getattr(handler, "get_token", None)
    token = get_token() if callable(get_token) else None
    if token is None:
        return ("cookie" if _cookie_of(handler, who) else "login"), None
    try:
        token_id = getattr(token, "api_id", None)
    except SQLAlchemyError:  # the request deleted the very token it was made with
        return "token", None
    return "token", token_id if isinstance(token_id, str) and TOKEN_ID.fullmatch(token_id) else None


def _cookie_of(handler: web.RequestHandler, who: object) -> bool:
    """Return whether the request carried the hub's login cookie of `who` (read, not renewed)."""
    name = getattr(handler.settings.get("hub"), "cookie_name", None)
    if not isinstance(name, str):
        return False
    days = getattr(handler, "cookie_max_age_days", None) or 14
    value = handler.get_secure_cookie(name, max_age_days=days)  # tornado 6.2 has no _signed_
    cookie_id = getattr(getattr(who, "orm_user", None), "cookie_id", None)
    return value is not None and value.decode("utf-8", "replace") == cookie_id


def _is_service(who: object) -> bool:
    from jupyterhub import orm

    return isinstance(who, orm.Service)


def others_server(handler: web.RequestHandler, actor: dict[str, Any]) -> dict[str, Any] | None:
    """Return the owner and name of the server an OAuth authorization is for, when the actor
    (identified) is not its owner; None otherwise (a service's client, one's own server)."""
    if actor["actor_kind"] == "none":
        return None  # not logged in: nothing was granted
    client_id = handler.get_argument("client_id", None)
    if not client_id:
        return None
    from jupyterhub import orm

    db = getattr(handler, "db", None)
    client = db.query(orm.OAuthClient).filter_by(identifier=client_id).first() if db else None
    spawner: Any = getattr(client, "spawner", None)
    owner = getattr(getattr(spawner, "user", None), "name", None)
    if spawner is None or not isinstance(owner, str) or owner == actor["actor"]:
        return None
    return {"target_user": owner[:NAME_LIMIT], "target_server": str(spawner.name or "")}
