"""Shared fixtures: real OPUS servers (gunicorn + scheduler) on SQLite and PostgreSQL.

PostgreSQL tests use the server on 127.0.0.1:5432 (user postgres, trust auth), each test
session in a database of its own. They are skipped when that server is unreachable, except
when ``OPUS_REQUIRE_POSTGRES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dataclasses

import pytest
import sqlalchemy as sa
import requests
from lxml import etree

from opus.activities.model import ActivityDescription, EntityDescription, ParameterDescription
from opus.activities.votable import read_activity, write_activity

ROOT = Path(__file__).resolve().parents[1]
#: Test data the repository carries (schemas, example descriptions): tests/data/README.md.
DATA = Path(__file__).resolve().parent / "data"
#: Example descriptions in the older OPUS dialect.
OPUS_DIALECT = DATA / "examples" / "opus-activity-descriptions"
BIN = Path(__file__).resolve().parent / "bin"
PG_ADMIN_URL = os.environ.get("OPUS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
UWS_NS = {"uws": "http://www.ivoa.net/xml/UWS/v1.0",
          "xlink": "http://www.w3.org/1999/xlink"}


def until(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition",
          interval: float = 0.1) -> Any:
    """Poll ``condition`` for what no event announces (a process leaving the process table,
    a heartbeat written, a line logged) until it gives a true value, which is returned;
    fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as error:  # any reason: no server, no driver, refused
        return str(error)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    problem = _postgres_available()
    if problem is not None:
        if os.environ.get("OPUS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_database(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session; dropped at the end."""
    import psycopg

    name = f"opus_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"], scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@dataclass
class Server:
    """A running ``opus serve``: its URL, data directory and process."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    session: requests.Session = field(default_factory=requests.Session)

    def rest(self, activity: str) -> str:
        return f"{self.url}/rest/{activity}"

    def create(self, activity: str, run: bool = True, **params: str) -> str:
        """POST a job; returns the job URL (the 303 Location)."""
        data = dict(params)
        if run:
            data["PHASE"] = "RUN"
        response = self.session.post(self.rest(activity), data=data, allow_redirects=False)
        assert response.status_code == 303, response.text
        return response.headers["Location"]

    def job(self, job_url: str, **query: str) -> etree._Element:
        response = self.session.get(job_url, params=query)
        assert response.status_code == 200, response.text
        return etree.fromstring(response.content)

    def phase(self, job_url: str) -> str:
        return self.session.get(f"{job_url}/phase").text

    def wait_final(self, job_url: str, timeout: float = 60.0) -> etree._Element:
        """Follow the job with blocking WAIT requests until it leaves the active phases."""
        deadline = time.monotonic() + timeout
        while True:
            document = self.job(job_url, WAIT="10")
            phase = document.findtext("uws:phase", namespaces=UWS_NS)
            if phase not in {"PENDING", "QUEUED", "EXECUTING"}:
                return document
            assert time.monotonic() < deadline, f"job still {phase} after {timeout} s"

    def stop(self) -> None:
        self.session.close()  # idle keep-alive connections would delay a graceful stop
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def begin_stop(self) -> None:
        """SIGTERM without waiting for the exit (:func:`reap_stopped` waits)."""
        self.session.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


#: Servers of finished tests told to stop, whose exit is awaited later (a graceful stop
#: takes ~2 s, mostly idle, and the next test need not wait for it); with the PostgreSQL
#: databases to drop once they have exited: (servers, kill deadline, admin URL, databases).
_STOPPING: list[tuple[list[Server], float, str, list[str]]] = []


def reap_stopped(block: bool) -> None:
    """Reap the servers :class:`ServerFactory` told to stop (killed 15 s after SIGTERM, as
    :meth:`Server.stop` does) and drop their databases; ``block``: wait for all of them."""
    for entry in list(_STOPPING):
        servers, deadline, admin, databases = entry
        for srv in servers:
            if block or time.monotonic() > deadline:
                try:
                    srv.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    srv.process.kill()
                    srv.process.wait()
        if any(srv.process.poll() is None for srv in servers):
            continue
        for url in databases:
            _drop_pg_database(admin, url)
        _STOPPING.remove(entry)


@pytest.fixture(scope="session", autouse=True)
def _servers_reaped() -> Iterator[None]:
    """At the end of the session, every server told to stop has exited."""
    yield
    reap_stopped(block=True)


def opus_environment() -> dict[str, str]:
    """This process's environment without the ``OPUS_*`` variables that are no setting
    (the test switches ``OPUS_REQUIRE_*``...): an ``opus`` command refuses those."""
    from opus.config import CONFIG_VARIABLE, Settings

    keep = {CONFIG_VARIABLE} | {f"OPUS_{name.upper()}" for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items()
            if not k.upper().startswith("OPUS_") or k.upper() in keep}


def start_server(data_dir: Path, database_url: str = "", *, scheduler: bool = True,
                 **settings: object) -> Server:
    """Start ``opus serve`` on a free port and wait until it answers."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**opus_environment(),
           "OPUS_DATA_DIR": str(data_dir),
           "OPUS_DATABASE_URL": database_url,
           "OPUS_BASE_URL": f"http://127.0.0.1:{port}",
           "OPUS_WORKERS": "2",
           "OPUS_THREADS": "32",
           "OPUS_SCHEDULER_INTERVAL": "1"}
    env.update({f"OPUS_{key.upper()}": str(value) for key, value in settings.items()})
    log_path = data_dir / "server.log"
    command = [sys.executable, "-m", "opus.cli", "serve", "--port", str(port)]
    if not scheduler:
        command.append("--no-scheduler")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
    server = Server(f"http://127.0.0.1:{port}", data_dir, process, env, log_path)
    deadline = time.monotonic() + 60
    while True:  # readiness: the port accepts and the app answers
        if process.poll() is not None:
            raise RuntimeError(f"opus serve exited:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/", timeout=2).status_code == 200:
                return server
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"opus serve did not start:\n{server.log()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("postgres_database")
    return ""


@pytest.fixture(scope="session")
def server(backend: str, database_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server per backend, with default settings."""
    srv = start_server(tmp_path_factory.mktemp(f"opus-{backend}"), database_url)
    yield srv
    srv.stop()


class ServerFactory:
    """Starts servers with special settings; each gets its own database (PostgreSQL: a new
    one, dropped after its server has stopped). :meth:`close` stops them all."""

    def __init__(self, backend: str, directory: Callable[[int], Path],
                 request: pytest.FixtureRequest) -> None:
        self.backend, self.directory, self.request = backend, directory, request
        self.started: list[Server] = []
        self.databases: list[str] = []

    def __call__(self, data_dir: Path | None = None, database_url: str | None = None,
                 **settings: object) -> Server:
        if database_url is None:
            database_url = ""
            if self.backend == "postgresql":
                database_url = _create_pg_database(self.request.getfixturevalue(
                    "postgres_admin_url"))
                self.databases.append(database_url)
        srv = start_server(data_dir or self.directory(len(self.started)), database_url,
                           **settings)
        self.started.append(srv)
        return srv

    def close(self) -> None:
        """Tell every server to stop; :func:`reap_stopped` waits for them (and drops their
        databases) while the next tests run."""
        for srv in self.started:
            srv.begin_stop()
        admin = (self.request.getfixturevalue("postgres_admin_url") if self.databases
                 else "")
        _STOPPING.append((self.started, time.monotonic() + 15, admin, self.databases))
        reap_stopped(block=False)


@pytest.fixture
def server_factory(backend: str, tmp_path: Path,
                   request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Start servers with special settings for one test; each gets its own database,
    dropped after its server has stopped."""
    factory = ServerFactory(backend, lambda n: tmp_path / f"srv{n}", request)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_server_factory(backend: str, tmp_path_factory: pytest.TempPathFactory,
                          request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """:func:`server_factory` for a module's tests that can share a server (same settings,
    no test depending on what another left): starting one costs 1-4 s."""
    factory = ServerFactory(backend, lambda n: tmp_path_factory.mktemp(f"srv{n}-{backend}"),
                            request)
    yield factory
    factory.close()


def slurm_problem() -> str | None:
    """Why the SLURM cluster cannot be used (None: sbatch is there and slurmctld answers)."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH (run scripts/slurm_cluster.sh install && start)"
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping failed: {exc}"
    if proc.returncode != 0 or "UP" not in proc.stdout:
        return f"slurmctld does not answer: {proc.stdout.strip()} {proc.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def slurm_available() -> bool:
    """A working SLURM cluster (scripts/slurm_cluster.sh start): skip without one, or fail
    when OPUS_REQUIRE_SLURM=1 (CI)."""
    problem = slurm_problem()
    if problem:
        if os.environ.get("OPUS_REQUIRE_SLURM") == "1":
            pytest.fail(f"OPUS_REQUIRE_SLURM=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    return True


def _create_pg_database(admin: str) -> str:
    import psycopg

    name = f"opus_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def _drop_pg_database(admin: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_pg_database(request: pytest.FixtureRequest) -> str:
    """A new database for one test, dropped when the test ends."""
    admin = request.getfixturevalue("postgres_admin_url")
    url = _create_pg_database(admin)
    request.addfinalizer(lambda: _drop_pg_database(admin, url))
    return url


@pytest.fixture(scope="session")
def activities_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test activities written with OPUS's own VOTable writer, plus the real sleep/echo."""
    directory = tmp_path_factory.mktemp("activities")
    output = EntityDescription("output", content_type="text/plain",
                               default_filename="output.txt")
    activities = [
        ActivityDescription(
            name="tree", description="a process tree that runs until stopped",
            command=(str(BIN / "tree.sh"),), execution_duration=600,
            parameters=(ParameterDescription("marker", arraysize="*"),),
        ),
        ActivityDescription(
            name="copy", description="copies its input file and adds a line",
            command=(str(BIN / "copy.sh"),), execution_duration=60,
            parameters=(ParameterDescription("suffix", arraysize="*", default="end"),),
            used=(EntityDescription("input", content_type="text/plain",
                                    default_filename="input.txt"),),
            generated=(output,),
        ),
        ActivityDescription(
            name="fail", description="fails with status 3",
            command=(str(BIN / "fail.sh"),), execution_duration=60,
            parameters=(ParameterDescription("reason", arraysize="*", default="none"),),
            generated=(output,),
        ),
    ]
    return write_activities(directory, activities, ("sleep", "echo"))


@pytest.fixture
def engine(backend: str, tmp_path: Path, request: pytest.FixtureRequest
           ) -> Iterator["sa.Engine"]:
    """A migrated, empty database of ``backend`` for store-level tests."""
    from opus.storage.engine import make_engine, upgrade

    if backend == "postgresql":
        url = _fresh_pg_database(request)
    else:
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def write_activities(directory: Path, activities: list[ActivityDescription],
                     real: tuple[str, ...]) -> Path:
    """Write test activities, and the shipped ``real`` ones with absolute commands, as
    description files in ``directory`` (an ``activities_dir``)."""
    for name in real:
        found = read_activity(ROOT / "activity_descriptions" / f"{name}.xml")
        absolute = (str(ROOT / found.command[0]),) + found.command[1:]
        activities.append(dataclasses.replace(found, command=absolute))
    for activity in activities:
        (directory / f"{activity.name}.xml").write_bytes(write_activity(activity))
    return directory


@pytest.fixture(scope="session")
def uws_schema() -> etree.XMLSchema:
    """UWS.xsd, with its xlink import resolved from tests/data/schemas (offline)."""
    schemas = DATA / "schemas"

    class Local(etree.Resolver):
        def resolve(self, url, pubid, context):  # type: ignore[no-untyped-def]
            name = url.rsplit("/", 1)[-1]
            if (schemas / name).exists():
                return self.resolve_filename(str(schemas / name), context)
            return None

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(Local())
    return etree.XMLSchema(etree.parse(str(schemas / "UWS.xsd"), parser))
