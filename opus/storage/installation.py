"""Which data dir the database belongs to.

Results live in the data dir and their rows in the database: a web node or a scheduler
pointed at another data dir than the one the database was created with would answer 404
for every result another node wrote, and run jobs in folders no other node sees. So the
first process to start writes a random id into ``DATA_DIR/installation-id`` and the same id
into the ``installation`` table; every later start compares the two and refuses to run on
a mismatch (an existing database upgraded to this schema adopts the first data dir started
with it).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import sqlalchemy as sa

from opus.storage.engine import write_transaction
from opus.storage.tables import installation

ID_FILE = "installation-id"
KEY = "data_dir_id"


class DataDirMismatch(Exception):
    """The data dir is not the one the database was created with."""


class SchemaNotReady(Exception):
    """The database has no ``installation`` table yet (``opus db upgrade`` has not run)."""


def _file_id(data_dir: Path, create: bool) -> str | None:
    path = data_dir / ID_FILE
    if create:
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(16) + "\n")
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def check_data_dir(engine: sa.Engine, data_dir: Path) -> str:
    """The installation id shared by ``data_dir`` and the database (set on first use);
    :class:`DataDirMismatch` if they disagree."""
    with write_transaction(engine) as connection:
        try:
            recorded = connection.execute(sa.select(installation.c.value)
                                          .where(installation.c.key == KEY)).scalar()
        except sa.exc.ProgrammingError as error:  # PostgreSQL: undefined table
            raise SchemaNotReady(str(error).splitlines()[0]) from None
        if recorded is None:
            found = _file_id(data_dir, create=True)
            assert found is not None
            connection.execute(installation.insert().values(key=KEY, value=found))
            return found
    found = _file_id(data_dir, create=False)
    if found != recorded:
        where = engine.url.render_as_string(hide_password=True)
        raise DataDirMismatch(
            f"data dir {data_dir} is not the one the database {where} was created with "
            f"({data_dir / ID_FILE}: {found or 'missing'}, database: {recorded}); every "
            f"node must share one data dir (OPUS_DATA_DIR)")
    return str(recorded)
