"""OPUS provenance benchmark: ProvSAP over a long chain, and search over many stored runs.

    .venv/bin/python bench/provenance.py [--backend sqlite|postgresql|both] [--quick]
                                         [--jobs 100000] [--chain 1000] [--json PATH]

For each backend it starts ``opus serve`` as bench/uws.py does (its helpers are reused: a
temporary data dir, and on PostgreSQL a fresh database dropped at the end), writes synthetic
provenance rows straight into the prov tables with SQLAlchemy, and measures over HTTP with
one keep-alive client:

1. ProvSAP ``ID=<last entity>&DEPTH=ALL`` (DIRECTION=BACK) over a chain of ``--chain`` jobs
   (act0 -> ent0 -> act1 -> ent1 -> ...: each activity used the previous one's product), in
   PROV-JSON and PROV-SVG (graphviz, opus/provenance/render.py), and the search
   ``ancestors=<last entity>`` over the same chain;
2. ``GET /provenance/search`` with ``--jobs`` stored runs (one product each, 3 parameters,
   2 agents, one of 40 execution contexts of ~120 packages), for a set of typical queries:
   by software version, parameter, hash, agent, time window, activity, and combinations;
   plus the query plans (EXPLAIN) of the software-version search.

Each figure is printed beside a baseline measured in the same run on the same server:
``GET /`` (the service index, a small JSON document). PostgreSQL gets ``ANALYZE`` after the
load (what autovacuum does within a minute); SQLite is left as a server would find it.
Progress goes to stderr, the table to stdout; exit status 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
import uws as uwsbench  # noqa: E402  (bench/uws.py: servers, databases, HTTP client)

from opus.auth import Viewer  # noqa: E402
from opus.config import load_settings  # noqa: E402
from opus.storage.engine import make_engine  # noqa: E402
from opus.storage import tables as t  # noqa: E402
from opus.provenance.search import parse_search
from opus.storage.provenance_search import statement  # noqa: E402

log = uwsbench.log
EPOCH = dt.datetime(2026, 1, 1)
ACTIVITIES = [("gammapy_maps", "1.2"), ("echo", "1.0"), ("ctapipe_process", "0.19"),
              ("sleep", "1.0")]
BASE_PACKAGES = [f"pkg{i:03d}" for i in range(110)]
NUMPY_VERSIONS = ["1.24.4", "1.25.2", "1.26.4", "2.0.2", "2.1.3"]


def hexid() -> str:
    return uuid.uuid4().hex


# -- synthetic rows ------------------------------------------------------------------------
def insert(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]],
           batch: int = 5000) -> None:
    for start in range(0, len(rows), batch):
        connection.execute(table.insert(), rows[start:start + batch])


def load_common(connection: sa.Connection, contexts: int) -> list[str]:
    """Agents and ``contexts`` execution contexts; returns the context ids."""
    agents = [{"id": "opus", "name": "OPUS job server", "type": "SoftwareAgent"}]
    agents += [{"id": f"user-u{i}", "name": f"u{i}", "type": "Individual"} for i in range(100)]
    insert(connection, t.prov_agent, agents)
    ids, packages = [], []
    for number in range(contexts):
        context = f"ctx-{hashlib.sha256(f'context {number}'.encode()).hexdigest()}"
        ids.append(context)
        content = {"host": f"node{number}", "python": "3.11.2", "packages": {}}
        versions = {name: f"{1 + number % 3}.{number % 7}.{i % 5}"
                    for i, name in enumerate(BASE_PACKAGES)}
        versions["numpy"] = NUMPY_VERSIONS[number % len(NUMPY_VERSIONS)]
        versions["gammapy"] = f"1.{number % 3}"
        versions["SQLAlchemy"] = "2.0.36"
        if number == 0:
            versions["rarepkg"] = "0.1"  # in one context only
        content["packages"] = versions
        connection.execute(t.prov_context.insert().values(id=context, content=json.dumps(content)))
        packages += [{"context_id": context, "package": name, "version": version}
                     for name, version in versions.items()]
    insert(connection, t.prov_context_package, packages)
    return ids


def load_chain(engine: sa.Engine, length: int, context: str) -> str:
    """act0 -> ent0 -> act1 -> ent1 ...; returns the last entity id."""
    activities, entities, generated, used, derived, parameters, associated = ([] for _ in
                                                                              range(7))
    previous = None
    for i in range(length):
        job = hexid()
        act, ent = f"act-{job}", f"ent-{hexid()}"
        end = EPOCH + dt.timedelta(minutes=i)
        activities.append({
            "id": act, "name": "chain", "job_id": job, "start_time": end, "end_time": end,
            "phase": "COMPLETED", "description_name": "chain", "description_version": "1.0",
            "description_sha256": "0" * 64, "context_id": context, "facts": "{}"})
        entities.append({
            "id": ent, "name": "output", "location": f"http://bench/rest/chain/{job}/results/"
            f"output", "generated_at_time": end, "content_type": "text/plain", "size": 100,
            "sha256": hashlib.sha256(ent.encode()).hexdigest(), "job_id": job,
            "result_id": "output"})
        generated.append({"entity_id": ent, "activity_id": act, "role": "output"})
        parameters.append({"activity_id": act, "name": "step", "value": str(i)})
        associated.append({"activity_id": act, "agent_id": "opus", "role": "Provider"})
        if previous is not None:
            used.append({"activity_id": act, "entity_id": previous, "role": "input",
                         "time": end})
            derived.append({"generated_entity_id": ent, "used_entity_id": previous,
                            "activity_id": act})
        previous = ent
    with engine.begin() as connection:
        for table, rows in ((t.prov_activity, activities), (t.prov_entity, entities),
                            (t.prov_was_generated_by, generated), (t.prov_used, used),
                            (t.prov_was_derived_from, derived), (t.prov_parameter, parameters),
                            (t.prov_was_associated_with, associated)):
            insert(connection, table, rows)
    assert previous is not None
    return previous


def load_runs(engine: sa.Engine, count: int, contexts: list[str]) -> dict[str, Any]:
    """``count`` finished runs of 4 activities over a year; returns values to search for."""
    rng = random.Random(42)
    probe: dict[str, Any] = {}
    batch = 10000
    for start in range(0, count, batch):
        rows: dict[sa.Table, list[dict[str, Any]]] = {
            table: [] for table in (t.prov_activity, t.prov_entity, t.prov_was_generated_by, t.prov_parameter,
                                    t.prov_was_associated_with)}
        for i in range(start, min(count, start + batch)):
            job = hexid()
            act, ent = f"act-{job}", f"ent-{hexid()}"
            name, version = ACTIVITIES[i % len(ACTIVITIES)]
            end = EPOCH + dt.timedelta(seconds=365 * 86400 * i / count)
            sha = hashlib.sha256(f"product {i}".encode()).hexdigest()
            rows[t.prov_activity].append({
                "id": act, "name": name, "job_id": job, "start_time": end, "end_time": end,
                "phase": "COMPLETED" if i % 10 else "ERROR", "description_name": name,
                "description_version": version, "description_sha256": "1" * 64,
                "context_id": contexts[rng.randrange(len(contexts))], "facts": "{}"})
            rows[t.prov_entity].append({
                "id": ent, "name": "output", "location": f"http://bench/rest/{name}/{job}/"
                f"results/output", "generated_at_time": end, "content_type": "text/plain",
                "size": 1000 + i, "sha256": sha, "job_id": job, "result_id": "output"})
            rows[t.prov_was_generated_by].append({"entity_id": ent, "activity_id": act,
                                              "role": "output"})
            rows[t.prov_parameter] += [
                {"activity_id": act, "name": "seed", "value": str(i)},
                {"activity_id": act, "name": "target", "value": f"source{i % 500}"},
                {"activity_id": act, "name": "text", "value": "x" * (i % 300)},
            ]
            rows[t.prov_was_associated_with] += [
                {"activity_id": act, "agent_id": "opus", "role": "Provider"},
                {"activity_id": act, "agent_id": f"user-u{i % 100}", "role": "Operator"}]
            if i == count // 2:
                probe.update(seed=str(i), sha256=sha, end=end)
        with engine.begin() as connection:
            for table, table_rows in rows.items():
                insert(connection, table, table_rows)
        log(f"  {min(count, start + batch)} runs stored")
    return probe


# -- measuring -----------------------------------------------------------------------------
def timed(client: uwsbench.Client, path: str, repeats: int) -> dict[str, Any]:
    status, _, body = client.request("GET", path)  # warm-up, and the answer's size
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        status, _, body = client.request("GET", path)
        times.append(time.perf_counter() - begin)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
    figures = {"p50_ms": statistics.median(times) * 1000,
               "p90_ms": uwsbench.percentile(times, 90) * 1000,
               "bytes": len(body), "repeats": repeats}
    if body[:1] == b"{":
        document = json.loads(body)
        if "count" in document:
            figures["hits"] = document["count"]
            figures["more"] = document["more"]
        elif "entity" in document:
            figures["nodes"] = sum(len(document.get(k, {}))
                                   for k in ("entity", "activity", "agent"))
    return figures


def explain(engine: sa.Engine, pairs: list[tuple[str, str]]) -> str:
    """The database's plan for a search (literal values, as the planner sees them), made
    for an anonymous caller, as the benchmark's requests are."""
    query = parse_search(pairs, "ivo://opus.local/provenance#")
    compiled = statement(query, viewer=Viewer()).compile(dialect=engine.dialect,
                                        compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN ANALYZE "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + str(compiled)).fetchall()
    if engine.dialect.name == "sqlite":
        return "\n".join(f"    {row[-1]}" for row in rows)
    return "\n".join(f"    {row[0]}" for row in rows)


def search_queries(probe: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    day = probe["end"]
    return [
        ("software=numpy==1.26.4", [("software", "numpy==1.26.4")]),
        ("software=RAREPKG (1 of 40 contexts)", [("software", "RAREPKG")]),
        ("software=numpy==0.0.1 (no match)", [("software", "numpy==0.0.1")]),
        ("software + activity + version", [("software", "numpy==1.26.4"),
                                           ("activity", "gammapy_maps"), ("version", "1.2")]),
        ("software + time window (1 day)", [
            ("software", "gammapy==1.1"), ("after", day.isoformat() + "Z"),
            ("before", (day + dt.timedelta(days=1)).isoformat() + "Z")]),
        ("param=seed:<one run>", [("param", f"seed:{probe['seed']}")]),
        ("param=target:source7 (200 runs)", [("param", "target:source7")]),
        ("sha256=<one product>", [("sha256", probe["sha256"])]),
        ("agent=u17 (1% of runs)", [("agent", "u17")]),
        ("activity=echo&version=1.0", [("activity", "echo"), ("version", "1.0")]),
        ("phase=ERROR", [("phase", "ERROR")]),
        ("no filter, limit=100", []),
        ("no filter, limit=1000", [("limit", "1000")]),
        ("no filter, offset=50000", [("offset", "50000")]),
    ]


def analyze(engine: sa.Engine) -> None:
    """PostgreSQL statistics, as autovacuum would gather them (committed: ANALYZE is
    transactional, and a rolled-back one leaves the planner without statistics)."""
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data_dir = work / f"opus-{backend}"
    data_dir.mkdir()
    database_name, database_url = None, ""
    server = None
    results: dict[str, Any] = {"backend": backend}
    repeats = 3 if args.quick else 7
    try:
        if backend == "postgresql":
            database_name, database_url = uwsbench.create_pg_database()
            log(f"postgresql: created database {database_name}")
        server = uwsbench.start_opus(backend, data_dir, database_url, 2, 32)
        settings = load_settings(environ=server.env)
        engine = make_engine(settings.effective_database_url)
        client = uwsbench.Client(server.url, timeout=120)
        log(f"{backend}: opus serve on {server.url}; loading {args.chain}-job chain")
        with engine.begin() as connection:
            contexts = load_common(connection, 40)
        last = load_chain(engine, args.chain, contexts[0])
        if backend == "postgresql":
            analyze(engine)
        results["baseline"] = timed(client, "/", repeats * 5)
        chain = {}
        for fmt in ("json", "svg"):
            chain[fmt] = timed(client, "/provsap?" + urlencode(
                {"ID": f"opus:{last}", "DEPTH": "ALL", "RESPONSEFORMAT": fmt}), repeats)
            log(f"  provsap DEPTH=ALL {fmt}: {chain[fmt]['p50_ms']:.0f} ms")
        chain["ancestors_search"] = timed(client, "/provenance/search?" + urlencode(
            {"ancestors": f"opus:{last}", "limit": "1000"}), repeats)
        results["chain"] = chain
        log(f"{backend}: loading {args.jobs} runs")
        begin = time.perf_counter()
        probe = load_runs(engine, args.jobs, contexts)
        if backend == "postgresql":
            analyze(engine)
        results["load_s"] = time.perf_counter() - begin
        results["baseline_after_load"] = timed(client, "/", repeats * 5)
        searches = {}
        for label, pairs in search_queries(probe):
            searches[label] = timed(client, "/provenance/search?" + urlencode(pairs),
                                    repeats * 3)
            log(f"  {label}: {searches[label]['p50_ms']:.1f} ms "
                f"({searches[label].get('hits')} hits)")
        results["search"] = searches
        results["explain_software"] = explain(engine, [("software", "numpy==1.26.4")])
        results["explain_software_rare"] = explain(engine, [("software", "rarepkg==0.1")])
        client.close()
        engine.dispose()
        return results
    finally:
        if server is not None:
            server.stop()
            log(f"{backend}: server stopped")
        if database_name is not None:
            uwsbench.drop_pg_database(database_name)
            log(f"postgresql: dropped database {database_name}")


def table(all_results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = []
    for r in all_results:
        base = r["baseline"]["p50_ms"]
        lines.append(f"\n== {r['backend']} == baseline GET / p50 {base:.2f} ms "
                     f"(after the load: {r['baseline_after_load']['p50_ms']:.2f} ms); "
                     f"{args.jobs} runs loaded in {r['load_s']:.1f} s")
        lines.append(f"{'measure':44} {'p50 ms':>9} {'p90 ms':>9} {'x base':>8} "
                     f"{'bytes':>9}  hits/nodes")
        rows = [(f"ProvSAP DEPTH=ALL chain {args.chain} {fmt}", r["chain"][fmt])
                for fmt in ("json", "svg")]
        rows.append((f"search ancestors= over chain {args.chain}",
                     r["chain"]["ancestors_search"]))
        rows += [(f"search {label}", figures) for label, figures in r["search"].items()]
        for label, f in rows:
            extra = f.get("hits", f.get("nodes", ""))
            if f.get("more"):
                extra = f"{extra}+"
            lines.append(f"{label:44} {f['p50_ms']:9.1f} {f['p90_ms']:9.1f} "
                         f"{f['p50_ms'] / base:8.0f} {f['bytes']:9d}  {extra}")
        lines.append("plan of software=numpy==1.26.4:\n" + r["explain_software"])
        lines.append("plan of software=rarepkg==0.1:\n" + r["explain_software_rare"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OPUS provenance benchmark")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--chain", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if shutil.which("dot") is None:
        log("graphviz 'dot' is not installed: the SVG figure will fail")
    work = Path(tempfile.mkdtemp(prefix="opus-bench-prov-"))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    all_results = []
    try:
        for backend in backends:
            all_results.append(run_backend(backend, args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(all_results, args))
    if args.json:
        args.json.write_text(json.dumps(all_results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
