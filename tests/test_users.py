"""Users and tokens: a PI reaches their own jobs and nobody else's (UWS 1.1 section 3)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from lxml import etree

from conftest import ROOT, UWS_NS, Server


def opus_users(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`opus users ...` against the server's own database."""
    return subprocess.run([sys.executable, "-m", "opus.cli", "users", *args], env=server.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    made = {}
    for name in ("alice", "bob"):
        done = opus_users(server, "add", f"{name}-{server.url.rsplit(':', 1)[1]}")
        assert done.returncode == 0, done.stderr
        made[name] = done.stdout.strip()
    return made


def as_user(token: str | None) -> requests.Session:
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_a_user_reaches_their_jobs_and_nobody_else_does(server: Server,
                                                        tokens: dict[str, str]) -> None:
    alice, bob, anonymous = as_user(tokens["alice"]), as_user(tokens["bob"]), as_user(None)
    created = alice.post(server.rest("echo"), data={"text": "private", "PHASE": "RUN"},
                         allow_redirects=False)
    assert created.status_code == 303
    job_url = created.headers["Location"]
    owner = alice.get(f"{job_url}/owner").text
    assert owner.startswith("alice-")
    for other in (bob, anonymous):
        assert other.get(job_url).status_code == 403
        assert other.get(f"{job_url}/results").status_code == 403
        assert other.post(f"{job_url}/phase", data={"PHASE": "ABORT"},
                          allow_redirects=False).status_code == 403
        assert other.delete(job_url, allow_redirects=False).status_code == 403
        assert job_url.rsplit("/", 1)[1] not in other.get(server.rest("echo")).text
    waited = alice.get(job_url, params={"WAIT": "10"})
    assert waited.status_code == 200
    assert job_url.rsplit("/", 1)[1] in alice.get(server.rest("echo")).text
    job = etree.fromstring(alice.get(job_url).content)
    assert job.findtext("uws:ownerId", namespaces=UWS_NS) == owner


def test_bad_credentials_get_401(server: Server) -> None:
    for header in ("Bearer not-a-token", "Basic dXNlcjpwdw==", "Bearer "):
        response = requests.get(server.rest("echo"), headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization" in response.text


def test_a_removed_user_token_stops_working(server_factory) -> None:
    srv = server_factory()
    token = opus_users(srv, "add", "carol").stdout.strip()
    assert as_user(token).get(srv.rest("echo")).status_code == 200
    assert "carol" in opus_users(srv, "list").stdout.split()
    assert opus_users(srv, "add", "carol").returncode == 1  # exists already
    assert opus_users(srv, "remove", "carol").returncode == 0
    # Tokens are cached for at most 30 s per worker; a new server process sees it at once.
    srv2 = server_factory(data_dir=srv.data_dir, database_url=srv.env["OPUS_DATABASE_URL"])
    assert as_user(token).get(srv2.rest("echo")).status_code == 401
