"""Erasing one user's events of some schemas (a study's, on withdrawal) from a PostgreSQL store
or a JSON-lines log.

Recorded in the store's erasures table, or the log's erasures file, as `jupyter telemetry
erase` records its erasures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .pgtable import names
from .retention import record_erasure, rewrite
from .store import connect, has_ids_table


def erase_user_schemas(
    url: str, table: str, user: str | None, schema_ids: Sequence[str], operator: str
) -> int:
    """Delete the events of `user` (as stored; None: anyone's) of `schema_ids`, with their ids
    and their rows in the dashboard's rollup; record the erasure; return how many events were
    deleted. Raise StoreError or psycopg.Error."""
    from psycopg import sql

    from jupyter_telemetry_ext.dashboard.pgrollup import erase_users as erase_from_rollup

    ids = names(table)
    where = sql.SQL("(%s::text IS NULL OR username = %s) AND schema_id = ANY(%s)")
    arguments: list[Any] = [user, user, list(schema_ids)]
    with connect(url, table) as conn, conn.transaction():
        if has_ids_table(conn, table):  # else the keys go with the rows
            conn.execute(
                sql.SQL("DELETE FROM {t_ids} WHERE key IN (SELECT key FROM {t} WHERE {w} "
                        "AND key IS NOT NULL)").format(w=where, **ids),
                arguments,
            )  # fmt: skip
        deleted = conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {w}").format(w=where, **ids), arguments
        ).rowcount
        erase_from_rollup(conn, table, None if user is None else [user], schema_ids)
        conn.execute(
            sql.SQL("INSERT INTO {t_erasures} (operator, events) VALUES (%s, %s)").format(**ids),
            [operator, deleted],
        )
    return int(deleted)


def erase_user_schemas_log(
    handler: logging.FileHandler, user: str | None, schema_ids: Sequence[str], operator: str
) -> int:
    """Delete the events of `user` (as recorded; None: anyone's) of `schema_ids` from the log a
    handler writes, and its rotated files; record the erasure; return how many were deleted.

    The handler's lock is held throughout, so nothing is written (nor rotated) meanwhile; each
    file is replaced atomically, and the handler reopens the new file at its next write.
    """
    path, erased = Path(handler.baseFilename), frozenset(schema_ids)

    def keep(capsule: dict[str, Any]) -> bool:
        theirs = user is None or capsule.get("__user__") == user
        return not theirs or capsule.get("__schema__") not in erased

    handler.acquire()
    try:
        handler.flush()
        removed = rewrite(path, keep, carry=False) if path.exists() else 0  # none appended
        if removed and handler.stream is not None:
            handler.stream.close()  # the replaced file's: the next write opens the new one
            handler.stream = None
    finally:
        handler.release()
    record_erasure(path, removed, operator)
    return removed
