"""ProvTAP benchmark: ADQL over the provenance of many runs, beside /provenance/search.

    .venv/bin/python bench/provtap.py [--jobs 100000] [--chain 200] [--quick] [--json PATH]

PostgreSQL only (ProvTAP is). Starts ``opus serve`` (one worker, so that the measured
process is the one whose translation cache was warmed) on a fresh database, writes the
synthetic provenance of bench/provenance.py straight into the tables (``--jobs`` runs of 4
activities, 3 parameters each, and a chain of ``--chain`` runs, each deriving from the
previous), ANALYZEs, and then, with one keep-alive client, times each question asked two
ways: an ADQL query through ``/tap/sync`` and the same search through
``/provenance/search``:

- by software version: the pipeline's version (ProvTAP has it as the activity's
  ``activity_description_id``; the execution context's packages are not in ProvTAP's
  views, so ``software=numpy==...`` has no ADQL twin and is shown alone);
- by parameter value (one run of 100,000) and by target (``target=source7``: 200 runs);
- ancestors of an entity: ADQL 2.0 has no recursive query, so a client walks
  ``wasderivedfrom`` one generation per query (the figure is the whole walk), beside a
  single query joining 5 generations, and the search's ``ancestors=`` (one request).

For ADQL, ``first`` is the first request of a query's shape (queryparser's translation
included: :mod:`opus.tap.adql` caches translations by shape) and p50/p90 the repeats after
it. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import provenance as provbench  # noqa: E402  (bench/provenance.py: the synthetic rows)
import uws as uwsbench  # noqa: E402  (bench/uws.py: servers, databases, HTTP client)
from lxml import etree  # noqa: E402

from opus.config import load_settings  # noqa: E402
from opus.storage.engine import make_engine  # noqa: E402

log = uwsbench.log
VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
JOIN_RUN = ("FROM provenance.entity AS ent "
            "JOIN provenance.wasgeneratedby AS gen ON gen.entity_id = ent.id "
            "JOIN provenance.activity AS act ON act.id = gen.activity_id ")


def adql_path(query: str, maxrec: int = 1000) -> str:
    return "/tap/sync?" + urlencode({"LANG": "ADQL", "REQUEST": "doQuery", "QUERY": query,
                                     "MAXREC": str(maxrec)})


def rows_of(body: bytes) -> list[list[str | None]]:
    root = etree.fromstring(body)
    return [[td.text for td in tr.iterfind("v:TD", VOT)]
            for tr in root.iterfind(".//v:TABLEDATA/v:TR", VOT)]


def get(client: uwsbench.Client, path: str) -> tuple[float, bytes]:
    begin = time.perf_counter()
    status, _, body = client.request("GET", path)
    elapsed = time.perf_counter() - begin
    if status != 200:
        raise RuntimeError(f"GET {path[:200]}: {status} {body[:300]!r}")
    return elapsed, body


def figures(times: list[float], first: float | None, hits: int) -> dict[str, Any]:
    return {"first_ms": None if first is None else first * 1000,
            "p50_ms": statistics.median(times) * 1000,
            "p90_ms": uwsbench.percentile(times, 90) * 1000, "hits": hits}


def timed_adql(client: uwsbench.Client, query: str, repeats: int) -> dict[str, Any]:
    first, body = get(client, adql_path(query))
    times = [get(client, adql_path(query))[0] for _ in range(repeats)]
    return figures(times, first, len(rows_of(body)))


def timed_search(client: uwsbench.Client, pairs: list[tuple[str, str]], repeats: int
                 ) -> dict[str, Any]:
    path = "/provenance/search?" + urlencode(pairs)
    _, body = get(client, path)  # warm-up
    times = [get(client, path)[0] for _ in range(repeats)]
    document = json.loads(body)
    return figures(times, None, int(document["count"]))


def walk_ancestors(client: uwsbench.Client, entity: str) -> tuple[float, int, int]:
    """Seconds, ancestors found and queries made, walking wasderivedfrom upward."""
    begin = time.perf_counter()
    found, queries, current = 0, 0, [entity]
    while current:
        ids = ", ".join(f"'{value}'" for value in current)
        _, body = get(client, adql_path(f"SELECT used_entity_id FROM "
                                        f"provenance.wasderivedfrom WHERE "
                                        f"generated_entity_id IN ({ids})"))
        queries += 1
        current = [str(row[0]) for row in rows_of(body)]
        found += len(current)
    return time.perf_counter() - begin, found, queries


def five_generations(entity: str) -> str:
    joins = " ".join(f"LEFT OUTER JOIN provenance.wasderivedfrom AS d{n} "
                     f"ON d{n}.generated_entity_id = d{n - 1}.used_entity_id"
                     for n in range(2, 6))
    return (f"SELECT d1.used_entity_id, d2.used_entity_id, d3.used_entity_id, "
            f"d4.used_entity_id, d5.used_entity_id FROM provenance.wasderivedfrom AS d1 "
            f"{joins} WHERE d1.generated_entity_id = '{entity}'")


def questions(probe: dict[str, Any]) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(label, ADQL or None, the search's parameters)."""
    return [
        ("pipeline version gammapy_maps/1.2 (a quarter of the runs; first 100)",
         f"SELECT TOP 100 ent.id, act.end_time {JOIN_RUN}WHERE act.name = 'gammapy_maps' "
         f"AND act.activity_description_id = 'gammapy_maps/1.2' ORDER BY act.end_time DESC",
         [("activity", "gammapy_maps"), ("version", "1.2")]),
        ("software numpy==1.26.4 (search only)", None, [("software", "numpy==1.26.4")]),
        ("parameter seed=<one run>",
         f"SELECT ent.id, act.end_time {JOIN_RUN}JOIN provenance.parameter AS par ON "
         f"par.activity_id = act.id WHERE par.name = 'seed' AND par.param_value = "
         f"'{probe['seed']}'", [("param", f"seed:{probe['seed']}")]),
        ("target source7 (one run in 500)",
         f"SELECT ent.id, act.end_time {JOIN_RUN}JOIN provenance.parameter AS par ON "
         f"par.activity_id = act.id WHERE par.name = 'target' AND par.param_value = "
         f"'source7' ORDER BY act.end_time DESC",
         [("param", "target:source7"), ("limit", "1000")]),
        ("target source8 + pipeline version gammapy_maps/1.2",
         f"SELECT ent.id, act.end_time {JOIN_RUN}JOIN provenance.parameter AS par ON "
         f"par.activity_id = act.id WHERE par.name = 'target' AND par.param_value = "
         f"'source8' AND act.activity_description_id = 'gammapy_maps/1.2'",
         [("param", "target:source8"), ("activity", "gammapy_maps"), ("version", "1.2"),
          ("limit", "1000")]),
    ]


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    repeats = 3 if args.quick else 9
    database_name, database_url = uwsbench.create_pg_database()
    log(f"postgresql: created database {database_name}")
    server = None
    results: dict[str, Any] = {"jobs": args.jobs, "chain": args.chain}
    try:
        data_dir = work / "opus"
        data_dir.mkdir()
        server = uwsbench.start_opus("postgresql", data_dir, database_url, 1, 8)
        engine = make_engine(load_settings(environ=server.env).effective_database_url)
        client = uwsbench.Client(server.url, timeout=300)
        with engine.begin() as connection:
            contexts = provbench.load_common(connection, 40)
        last = provbench.load_chain(engine, args.chain, contexts[0])
        log(f"loading {args.jobs} runs")
        begin = time.perf_counter()
        probe = provbench.load_runs(engine, args.jobs, contexts)
        results["load_s"] = time.perf_counter() - begin
        provbench.analyze(engine)
        results["baseline_ms"] = statistics.median(
            get(client, "/")[0] for _ in range(repeats * 3)) * 1000
        rows = []
        for label, query, pairs in questions(probe):
            adql = timed_adql(client, query, repeats) if query else None
            search = timed_search(client, pairs, repeats)
            rows.append({"label": label, "adql": adql, "search": search})
            log(f"  {label}: adql {adql and round(adql['p50_ms'], 1)} ms, "
                f"search {search['p50_ms']:.1f} ms")
        walks = [walk_ancestors(client, last) for _ in range(max(2, repeats // 3))]
        walk_times = [seconds for seconds, _, _ in walks[1:]]
        rows.append({"label": f"ancestors over a chain of {args.chain} (ADQL: "
                              f"{walks[0][2]} queries, one per generation)",
                     "adql": figures(walk_times, walks[0][0], walks[0][1]),
                     "search": timed_search(client, [("ancestors", f"opus:{last}"),
                                                     ("limit", "1000")], repeats)})
        five = timed_adql(client, five_generations(last), repeats)
        rows.append({"label": "ancestors, 5 generations in one ADQL join", "adql": five,
                     "search": None})
        results["rows"] = rows
        client.close()
        engine.dispose()
        return results
    finally:
        if server is not None:
            server.stop()
        uwsbench.drop_pg_database(database_name)


def table(results: dict[str, Any]) -> str:
    lines = [f"ProvTAP vs /provenance/search, PostgreSQL, {results['jobs']} runs (+ a chain "
             f"of {results['chain']}), loaded in {results['load_s']:.0f} s; baseline GET / "
             f"p50 {results['baseline_ms']:.2f} ms",
             f"{'question':70} {'ADQL first':>10} {'ADQL p50':>9} {'p90':>8} {'rows':>5} "
             f"{'search p50':>10} {'p90':>8} {'hits':>5}"]

    def cells(f: dict[str, Any] | None, first: bool) -> str:
        if f is None:
            return f"{'-':>10} {'-':>9} {'-':>8} {'-':>5}" if first else \
                f"{'-':>10} {'-':>8} {'-':>5}"
        head = f"{f['first_ms']:10.1f} " if first else ""
        return f"{head}{f['p50_ms']:9.1f} {f['p90_ms']:8.1f} {f['hits']:5d}" if first else \
            f"{f['p50_ms']:10.1f} {f['p90_ms']:8.1f} {f['hits']:5d}"

    for row in results["rows"]:
        lines.append(f"{row['label'][:70]:70} {cells(row['adql'], True)} "
                     f"{cells(row['search'], False)}")
    lines.append("(milliseconds; ADQL 'first' includes queryparser's translation of a "
                 "new query shape)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ProvTAP benchmark")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="opus-bench-provtap-"))
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
