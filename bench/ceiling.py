"""The ceiling of bench/uws.py: the bare stack OPUS is built on, doing the least a job
creation must do (issue 15).

    .venv/bin/python bench/ceiling.py --port 8101 --database-url URL [--workers 2]
                                      [--worker-class gevent|gthread] [--threads 256]

bottle + SQLAlchemy Core: POST /rest/<activity> parses the form, INSERTs one row with a
uuid4 id into a table of its own (created at start), and answers 303 to the job's URL.
Served by gunicorn in this process with the options of ``opus serve`` (opus/serving.py:
worker class, workers, keep-alive, timeouts, no access log), as bench/hello.py is, so that
OPUS / ceiling is what OPUS adds to one INSERT: identity, validation, the job folder,
events, the job's other columns. SQLite: WAL and synchronous=NORMAL, like OPUS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import uuid
from typing import Any

import bottle
import sqlalchemy as sa
from hello import serve_like_opus  # bench/ is on the path of a script run from it

metadata = sa.MetaData()
jobs = sa.Table(
    "ceiling_jobs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("activity", sa.String(64), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("creation_time", sa.DateTime, nullable=False),
)


def make_app(database_url: str) -> bottle.Bottle:
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
    engine = sa.create_engine(database_url, pool_size=10, max_overflow=40)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
    metadata.create_all(engine, checkfirst=True)
    app = bottle.Bottle()

    @app.get("/hello")
    def hello() -> str:
        return "hello world\n"

    @app.post("/rest/<activity>")
    def create(activity: str) -> bottle.HTTPResponse:
        form = bottle.request.forms.decode()
        parameters = "&".join(f"{k}={v}" for k, v in form.allitems())
        job_id = uuid.uuid4().hex
        with engine.begin() as connection:
            connection.execute(jobs.insert().values(
                id=job_id, activity=activity, phase="PENDING", parameters=parameters,
                creation_time=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)))
        parts = bottle.request.urlparts
        return bottle.HTTPResponse(status=303, headers={
            "Location": f"{parts.scheme}://{parts.netloc}/rest/{activity}/{job_id}"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", choices=["gevent", "gthread"], default="gevent")
    parser.add_argument("--threads", type=int, default=256)
    parser.add_argument("--keepalive", type=int, default=75)
    parser.add_argument("--create-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.create_only:
        make_app(args.database_url)
        return
    # The table once, before the workers fork (two creating it at once would race), in a
    # child: psycopg imported here, before gevent's patch, would not yield in the workers.
    subprocess.run([sys.executable, __file__, "--create-only", "--database-url",
                    args.database_url], check=True)

    serve_like_opus(args, lambda: make_app(args.database_url), loglevel="warning")


if __name__ == "__main__":
    main()
