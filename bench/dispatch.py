"""Cost of the fair-dispatch queries (opus/storage/dispatch.py) with many ended jobs.

Not a test.  Usage: .venv/bin/python bench/dispatch.py URL ENDED WAITING, e.g.
``sqlite:////tmp/d.sqlite 100000 200`` (a fresh database: it is migrated and filled).
Prints the mean time of the scheduler's ``JobStore.queued(10)`` and of the quote's
``dispatch.ahead_of`` for the last waiting job.
"""
import sys
import tempfile
import time
import uuid
import warnings
warnings.simplefilter("ignore")
from pathlib import Path
import sqlalchemy as sa
from opus.storage.engine import make_engine, upgrade
from opus.storage.events import make_events
from opus.storage.jobs import JobStore
from opus.storage.tables import jobs
from opus.storage import dispatch
from opus.uws.models import Phase, utcnow
url, ended, waiting = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
engine = make_engine(url); upgrade(engine)
store = JobStore(engine, make_events(engine, Path(tempfile.mkdtemp())))
now = utcnow()
def row(owner, phase, state):
    return dict(job_id=uuid.uuid4().hex, activity="sleep", owner_id=owner, owner_key=owner, public=False,
                phase=phase, creation_time=now, execution_duration=10, parameters="{}", cluster_state=state)
with engine.begin() as c:
    rows = [row(None if i % 2 else f"u{i%50}", Phase.COMPLETED, "ended") for i in range(ended)]
    for i in range(0, len(rows), 5000): c.execute(jobs.insert(), rows[i:i+5000])
    c.execute(jobs.insert(), [row(None, Phase.QUEUED, None) for _ in range(waiting)])
    c.execute(jobs.insert(), [row("alice", Phase.QUEUED, None)])
    c.execute(jobs.insert(), [row(None, Phase.EXECUTING, "submitted") for _ in range(2)])
if engine.dialect.name == "postgresql":
    with engine.connect() as c: c.execute(sa.text("ANALYZE jobs")); c.commit()
last = store.queued(1000)[-1].job_id
for name, call in [("queued(10)", lambda: store.queued(10)), ("ahead_of(last)", lambda: dispatch.ahead_of(engine, last))]:
    call(); t = time.perf_counter(); n = 20
    for _ in range(n): call()
    print(f"{name}: {(time.perf_counter()-t)/n*1000:.1f} ms with {ended} ended, {waiting} waiting")
