"""Every route, fed bytes that are not text: a 4xx, never a 500.

The routes are read from the application itself, so a route added later is swept too.
Each is called with query strings holding an undecodable byte (``%FF``), a lone surrogate
encoded as UTF-8 (``%ED%A0%80``), a NUL (``%00``), and with the same in its path
parameters, by every method it answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from conftest import Server

HOSTILE = ("%FF", "%ED%A0%80", "%00", "a%00b", "%C0%AF")
WILDCARD = re.compile(r"<([^>:]+)(?::[^>]*)?>")


def routes(tmp_path: Path) -> list[tuple[str, str]]:
    from opus.app import create_app
    from opus.config import load_settings

    app = create_app(load_settings({"OPUS_DATA_DIR": str(tmp_path)}))
    return sorted({(route.method, route.rule) for route in app.routes})


@pytest.fixture(scope="module")
def targets(server: Server, tmp_path_factory: pytest.TempPathFactory
            ) -> list[tuple[str, str]]:
    job_url = server.create("echo", run=False, text="x")
    values = {"activity": "echo", "job_id": job_url.rsplit("/", 1)[1], "name": "text",
              "result_id": "output"}
    found = []
    for method, rule in routes(tmp_path_factory.mktemp("routes")):
        found.append((method, WILDCARD.sub(lambda m: values.get(m.group(1), "x"), rule)))
        for bad in HOSTILE:  # each path parameter in turn
            for match in WILDCARD.finditer(rule):
                path = rule[:match.start()] + bad + rule[match.end():]
                found.append((method, WILDCARD.sub(lambda m: values.get(m.group(1), "x"),
                                                   path)))
    return found


def test_every_route_answers_hostile_bytes_with_a_client_error(
        server: Server, targets: list[tuple[str, str]]) -> None:
    failures = []
    for method, path in targets:
        for bad in HOSTILE:
            query = f"ID={bad}&PHASE={bad}&{bad}={bad}&RESPONSEFORMAT={bad}&WAIT={bad}"
            for url, data in ((f"{server.url}{path}?{query}", None),
                              (f"{server.url}{path}", f"ID={bad}&text={bad}&{bad}=1")):
                headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
                response = requests.request(method, url, data=data, headers=headers,
                                            allow_redirects=False, timeout=30)
                if (response.status_code == 501 and path.startswith("/tap")
                        and "needs PostgreSQL" in response.text):
                    continue  # ProvTAP's documented answer on SQLite (README: ProvTAP)
                if response.status_code >= 500:
                    failures.append(f"{method} {url} {data or ''} -> {response.status_code} "
                                    f"{response.text[:120]!r}")
    assert not failures, "\n".join(failures)
