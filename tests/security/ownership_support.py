"""A server with users alice, bob, carol and an admin, for the ownership attacks
(tests/security/test_ownership.py) and the endpoint x identity matrix (test_matrix.py)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from conftest import (ROOT, UWS_NS, Server, _create_pg_database, _drop_pg_database,
                      start_server)

IDENTITIES = ("alice", "bob", "anonymous", "admin")


def opus_users(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`opus users ...` against the server's own database."""
    return subprocess.run([sys.executable, "-m", "opus.cli", "users", *args], env=server.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def session(token: str | None) -> requests.Session:
    caller = requests.Session()
    if token:
        caller.headers["Authorization"] = f"Bearer {token}"
    return caller


@dataclass
class World:
    """The server and one HTTP session per identity (``anonymous`` sends no token)."""

    server: Server
    callers: dict[str, requests.Session] = field(default_factory=dict)

    def __getitem__(self, who: str) -> requests.Session:
        return self.callers[who]

    @property
    def url(self) -> str:
        return self.server.url

    def create(self, who: str, activity: str, *, run: bool = True, files: Any = None,
               **data: str) -> str:
        """POST a job as ``who``; the job URL."""
        if run:
            data["PHASE"] = "RUN"
        response = self.callers[who].post(self.server.rest(activity), data=data, files=files,
                                          allow_redirects=False)
        assert response.status_code == 303, response.text
        return str(response.headers["Location"])

    def wait_final(self, who: str, job_url: str, timeout: float = 60.0) -> etree._Element:
        deadline = time.monotonic() + timeout
        while True:
            response = self.callers[who].get(job_url, params={"WAIT": "10"})
            assert response.status_code == 200, response.text
            document = etree.fromstring(response.content)
            phase = document.findtext("uws:phase", namespaces=UWS_NS)
            if phase not in {"PENDING", "QUEUED", "EXECUTING"}:
                return document
            assert time.monotonic() < deadline, f"job still {phase} after {timeout} s"

    def run(self, who: str, activity: str, *, files: Any = None, **data: str) -> str:
        """A job of ``who`` that COMPLETED; its URL."""
        job_url = self.create(who, activity, files=files, **data)
        document = self.wait_final(who, job_url)
        assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED", \
            etree.tostring(document)
        return job_url

    def provsap(self, who: str, **params: str) -> requests.Response:
        return self.callers[who].get(f"{self.url}/provsap", params=params)

    def entities(self, who: str, job_url: str) -> dict[str, str]:
        """{label: entity id (``ent-...``)} of what the job's run used and generated, as ``who`` sees
        them (ProvSAP, both directions from the run)."""
        job_id = job_url.rsplit("/", 1)[1]
        found: dict[str, str] = {}
        for direction in ("BACK", "FORTH"):
            response = self.provsap(who, ID=job_id, DIRECTION=direction)
            assert response.status_code == 200, response.text
            for key, entity in response.json().get("entity", {}).items():
                found[f"{direction.lower()}:{entity.get('prov:label')}"] = \
                    key.removeprefix("opus:")
        return found

    def publish(self, who: str, job_url: str, access: str = "public") -> requests.Response:
        return self.callers[who].post(f"{job_url}/access", data={"ACCESS": access},
                                      allow_redirects=False)


def start_world(backend: str, activities_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[World]:
    """Body of a module-scoped fixture: a server of its own (database of its own too)."""
    database_url, admin = "", None
    if backend == "postgresql":
        admin = request.getfixturevalue("postgres_admin_url")
        database_url = _create_pg_database(admin)
    try:
        server = start_server(tmp_path_factory.mktemp(f"owners-{backend}"), database_url,
                              activities_dir=activities_dir)
    except Exception:
        if admin is not None:
            _drop_pg_database(admin, database_url)
        raise
    world = World(server, {"anonymous": session(None)})
    try:
        for name in ("alice", "bob", "carol", "admin"):
            args = ("add", "--admin", "root") if name == "admin" else ("add", name)
            done = opus_users(server, *args)
            assert done.returncode == 0, done.stderr
            world.callers[name] = session(done.stdout.strip())
        yield world
    finally:
        for caller in world.callers.values():
            caller.close()
        server.stop()
        if admin is not None:
            _drop_pg_database(admin, database_url)


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex}"


def same_answer(first: requests.Response, second: requests.Response,
                *ids: tuple[str, str]) -> None:
    """``first`` and ``second`` say the same thing, once each pair of (id in first, id in
    second) is put aside: an ID the caller may not read is answered like an unknown one."""
    text = first.text
    for mine, other in ids:
        text = text.replace(mine, other)
    assert (first.status_code, text) == (second.status_code, second.text)
