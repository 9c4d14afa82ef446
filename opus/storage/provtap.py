"""ProvTAP queries: a checked query (:mod:`opus.tap.adql`) run for one viewer, read-only,
bounded in time and rows; and the TAP_SCHEMA tables. PostgreSQL only (migration 0006).

How the viewer reaches the views: each query runs in its own transaction on a pooled
connection,

1. ``SET TRANSACTION READ ONLY``;
2. ``set_config(name, value, true)`` (transaction-local, values as bound parameters) for
   ``statement_timeout``, ``opus.tap_viewer`` (the viewer's users.id, '' for anonymous),
   ``opus.tap_admin`` (``on`` or ``off``), ``search_path`` (``provenance, tap_schema``:
   a name without schema can reach nothing else), ``standard_conforming_strings``
   (``on``: a backslash in a literal is a character, as the checks read it) and ``jit``
   (``off``: the security-barrier views make the planner overestimate a join by orders of
   magnitude, and JIT compilation then took 7 of a query's 10 s over 100,000 runs,
   bench/provtap.py);
3. the query, through a server-side cursor: psycopg declares it with the extended query
   protocol, where PostgreSQL refuses more than one statement, and the rows are fetched
   ``limit + 1`` at most (the one beyond the limit only tells that there are more);
4. ``ROLLBACK``: the settings end with the transaction.

The query cannot change the settings: it is one SELECT (step 3 and the checks of
:mod:`opus.tap.adql`), a SELECT changes a setting only by calling ``set_config``, and no
function outside ADQL's standard set passes the checks.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa

from opus.errors import ParameterError
from opus.storage.health import health_of

#: PostgreSQL type name -> VOTable datatype of a result column (others: char).
VOTABLE_TYPES = {
    "bool": "boolean", "int2": "short", "int4": "int", "int8": "long", "float4": "float",
    "float8": "double", "numeric": "double", "oid": "long",
}
TIMESTAMPS = {"timestamp", "timestamptz"}

_cursors = itertools.count()


class QueryAborted(Exception):
    """The query of an aborted async job was cancelled (or never started)."""


@dataclass(frozen=True)
class ResultColumn:
    """A column of a result: its name and VOTable type, and, for a column taken as it is
    from a table, what TAP_SCHEMA says of it."""

    name: str
    datatype: str
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str | None = None


@dataclass
class QueryResult:
    columns: list[ResultColumn]
    rows: list[tuple[Any, ...]]
    overflow: bool = False


@dataclass(frozen=True)
class Viewer:
    """Who a query runs for: the users.id (None: anonymous) and whether an admin."""

    key: str | None = None
    admin: bool = False


@dataclass
class TapSchema:
    """The rows of the TAP_SCHEMA tables, as dicts by column name."""

    schemas: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    columns: list[dict[str, Any]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    key_columns: list[dict[str, Any]] = field(default_factory=list)


class ProvTapStore:
    """Runs ProvTAP queries on the database of ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @property
    def available(self) -> bool:
        """Whether the database can serve ProvTAP (PostgreSQL)."""
        return self.engine.dialect.name == "postgresql"

    def run(self, sql: str, viewer: Viewer, limit: int, timeout: float,
            started: Callable[[int], bool] | None = None) -> QueryResult:
        """Rows of the checked query ``sql`` as ``viewer`` sees them: at most ``limit``
        (``overflow`` if there were more), within ``timeout`` seconds per statement.

        With ``started`` (async queries), the query runs on a connection of its own,
        closed after it, and ``started(backend_pid)`` is called before the query: a
        pooled connection would let an ABORT's ``pg_cancel_backend`` reach whatever
        statement the pool lent that backend to next. ``started`` returning False (the
        job was aborted meanwhile) raises :class:`QueryAborted` without running it."""
        try:
            if started is None:
                raw = self.engine.raw_connection()  # the driver's own error, not wrapped
                close = raw.close
                connection = raw.driver_connection
            else:
                connection = psycopg.connect(self.engine.url.set(drivername="postgresql")
                                             .render_as_string(hide_password=False))
                close = connection.close
        except psycopg.OperationalError as error:
            health_of(self.engine).failed(error)  # logged once per outage
            raise sa.exc.OperationalError("connect", None, error) from None
        try:
            assert isinstance(connection, psycopg.Connection)
            try:
                if started is not None and not started(connection.info.backend_pid):
                    raise QueryAborted()
                return self._run(connection, sql, viewer, limit, timeout)
            finally:
                if not connection.closed:
                    connection.rollback()
        except psycopg.errors.QueryCanceled as error:
            if "statement timeout" not in str(error):
                raise QueryAborted() from None
            raise ParameterError("QUERY", f"the query took longer than the limit of "
                                          f"{timeout:g} s") from None
        except (psycopg.ProgrammingError, psycopg.DataError, psycopg.NotSupportedError
                ) as error:  # SQLSTATE classes 42, 22, 0A...: the query's own fault
            raise ParameterError("QUERY", _message(error)) from None
        except psycopg.OperationalError as error:  # 503, as any database outage
            health_of(self.engine).failed(error)
            raise sa.exc.OperationalError("ProvTAP query", None, error) from None
        finally:
            close()

    def _run(self, connection: psycopg.Connection[Any], sql: str, viewer: Viewer, limit: int,
             timeout: float) -> QueryResult:
        connection.execute("SET TRANSACTION READ ONLY")
        connection.execute(
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('opus.tap_viewer', %s, true), "
            "set_config('opus.tap_admin', %s, true), "
            "set_config('search_path', 'provenance, tap_schema', true), "
            "set_config('standard_conforming_strings', 'on', true), "
            "set_config('jit', 'off', true)",
            (str(max(1, int(timeout * 1000))), viewer.key or "",
             "on" if viewer.admin else "off"))
        with connection.cursor(name=f"opus_tap_{next(_cursors)}") as cursor:
            cursor.execute(sql)
            rows = cursor.fetchmany(limit + 1) if limit > 0 else cursor.fetchmany(1)
            description = cursor.description or []
            result = cursor.pgresult
            sources = [(result.ftable(i), result.ftablecol(i)) if result else (0, 0)
                       for i in range(len(description))]
        declared = _declared(connection, {oid for oid, _ in sources if oid})
        types = connection.adapters.types
        columns = []
        for column, source in zip(description, sources):
            info = types.get(column.type_code)
            name = info.name if info is not None else ""
            meta = declared.get(source, {})
            columns.append(ResultColumn(
                column.name, VOTABLE_TYPES.get(name, "char"),
                "timestamp" if name in TIMESTAMPS else None, meta.get("unit"),
                meta.get("ucd"), meta.get("utype"), meta.get("description")))
        overflow = len(rows) > limit
        return QueryResult(columns, [_plain(row) for row in rows[:limit]], overflow)

    def tap_schema(self) -> TapSchema:
        """Everything TAP_SCHEMA holds, in the order of its indexes."""
        found = TapSchema()
        order = {"schemas": "schema_index", "tables": "table_index",
                 "columns": "table_name, column_index", "keys": "key_id",
                 "key_columns": "key_id"}
        with self.engine.connect() as connection:
            for table, by in order.items():
                result = connection.execute(sa.text(
                    f"SELECT * FROM tap_schema.{table} ORDER BY {by}"))
                getattr(found, table).extend(dict(row) for row in result.mappings())
        return found


def _declared(connection: psycopg.Connection[Any], tables: set[int]
              ) -> dict[tuple[int, int], dict[str, Any]]:
    """TAP_SCHEMA's unit, UCD, utype and description of the columns of ``tables`` (OIDs),
    by (table OID, column number): the source of a result column, as PostgreSQL reports it."""
    if not tables:
        return {}
    rows = connection.execute(
        "SELECT a.attrelid, a.attnum, t.unit, t.ucd, t.utype, t.description "
        "FROM pg_catalog.pg_attribute a "
        "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN tap_schema.columns t ON t.table_name = n.nspname || '.' || c.relname "
        "AND t.column_name = a.attname WHERE a.attrelid = ANY(%s)",
        (sorted(tables),)).fetchall()
    return {(row[0], row[1]): {"unit": row[2], "ucd": row[3], "utype": row[4],
                               "description": row[5]} for row in rows}


def _message(error: psycopg.Error) -> str:
    diagnostic = error.diag.message_primary or str(error).splitlines()[0]
    return f"the query failed: {diagnostic}"


def _plain(row: Sequence[Any]) -> tuple[Any, ...]:
    """Cells as str, int, float, bool or None (timestamps as ISO 8601 UTC text)."""
    cells: list[Any] = []
    for value in row:
        if isinstance(value, datetime.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            cells.append(value.isoformat(timespec="milliseconds"))
        elif isinstance(value, decimal.Decimal):
            cells.append(float(value))
        elif value is None or isinstance(value, (str, int, float, bool)):
            cells.append(value)
        else:
            cells.append(str(value))
    return tuple(cells)
