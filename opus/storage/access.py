"""The read rule of :class:`opus.auth.Viewer` in SQL, for the tables whose rows carry an owner
(``owner_key``: users.id, NULL for anonymous) and a ``public`` flag: ``prov_activity`` and
``prov_entity`` (and ``jobs``).

``visible(table, viewer)`` is ``public OR owner_key IS NULL OR owner_key = :key`` (no
``owner_key = ...`` term for an anonymous viewer), or None for an admin, who sees every
row: the stores add it to their WHERE clauses so that what a caller may not read is never
read at all. :meth:`opus.auth.Viewer.may_read` is the same rule in Python; a test compares
the two on every combination.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opus.auth import Viewer


def visible(table: sa.Table, viewer: Viewer) -> sa.ColumnElement[bool] | None:
    """The condition on ``table``'s rows that ``viewer`` may read; None: all of them."""
    if viewer.admin:
        return None
    owner = table.c.owner_key
    allowed = [table.c.public == sa.true(), owner.is_(None)]
    if viewer.key is not None:
        allowed.append(owner == viewer.key)
    return sa.or_(*allowed)


def only_visible(query: sa.Select[Any], table: sa.Table, viewer: Viewer) -> sa.Select[Any]:
    """``query`` restricted to the rows of ``table`` that ``viewer`` may read."""
    condition = visible(table, viewer)
    return query if condition is None else query.where(condition)
