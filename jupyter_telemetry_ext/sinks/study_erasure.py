"""Erasing one user's events of some schemas from a PostgreSQL store (a study's, on withdrawal).

Recorded in the store's erasures table, as `jupyter telemetry erase` records its erasures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .pgtable import names
from .store import connect, has_ids_table


def erase_user_schemas(
    url: str, table: str, user: str, schema_ids: Sequence[str], operator: str
) -> int:
    """Delete the events of `user` (as stored) of `schema_ids`, with their ids; record the
    erasure; return how many events were deleted. Raise StoreError or psycopg.Error."""
    from psycopg import sql

    ids = names(table)
    where = sql.SQL("username = %s AND schema_id = ANY(%s)")
    arguments: list[Any] = [user, list(schema_ids)]
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
        conn.execute(
            sql.SQL("INSERT INTO {t_erasures} (operator, events) VALUES (%s, %s)").format(**ids),
            [operator, deleted],
        )
    return int(deleted)
