"""PROV-VOTABLE and graphviz pictures of hand-built provenance graphs (no server, no DB).

The graphs carry tricky text (quotes, ``<``, ``&``, backslashes, newlines, non-ASCII, a
control character) in names, comments, roles and parameters; it must come out literally.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest
from lxml import etree
from vochecks import votable_schema, votlint

from opus.provenance import render as render_module
from opus.provenance.graph import Graph
from opus.provenance.render import RenderError, graph_to_dot, quote, render
from opus.provenance.votable import graph_to_votable

NAMESPACE = "ivo://opus.test/provenance#"
VOT = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
SVG = {"s": "http://www.w3.org/2000/svg"}
TRICKY = 'say "hi" <b> & a&lt;b \\N back\\slash\nnext line é ü 日本'
T0 = dt.datetime(2024, 5, 6, 7, 8, 9)

# CI (OPUS_REQUIRE_GRAPHVIZ=1) must run these: there a missing graphviz fails them.
needs_graphviz = pytest.mark.skipif(
    (shutil.which("dot") is None or shutil.which("sfdp") is None)
    and os.environ.get("OPUS_REQUIRE_GRAPHVIZ") != "1",
    reason="graphviz (dot, sfdp) not installed")


def chain_graph() -> Graph:
    """ent-0 -> act-0 -> ent-1 -> act-1 -> ent-2 -> act-2 -> ent-3, with two agents."""
    graph = Graph()
    for i in range(4):
        graph.entities[f"ent-{i}"] = {
            "id": f"ent-{i}", "name": f"file{i}.fits {TRICKY}",
            "location": f"https://opus.test/jobs/j{i}/results/r?a=1&b=<{i}>",
            "generated_at_time": T0 + dt.timedelta(seconds=i) if i else None,
            "invalidated_at_time": None, "comment": TRICKY + "\x01",
            "content_type": "application/fits", "size": 12_345_678_901 if i else None,
            "sha256": "ab" * 32, "job_id": f"j{i}" if i else None, "result_id": "r",
        }
    for i in range(3):
        act = f"act-{i}"
        graph.activities[act] = {
            "id": act, "name": f"step{i}", "job_id": f"j{i + 1}", "start_time": T0,
            "end_time": (T0 + dt.timedelta(seconds=1, microseconds=250000)).replace(
                tzinfo=dt.timezone.utc),
            "phase": "COMPLETED", "comment": TRICKY, "description_name": "step",
            "description_version": "1.0", "description_sha256": None, "script_sha256": None,
            "exit_code": 0, "context_id": "ctx-abc", "facts": {"host": "hôte"},
        }
        graph.used.add((act, f"ent-{i}", f"input {TRICKY}"))
        graph.generated.add((f"ent-{i + 1}", act, "output"))
        graph.derived.add((f"ent-{i + 1}", f"ent-{i}", act))
        graph.associated.add((act, "opus", "Provider"))
        graph.associated.add((act, "user-zoë", "Operator"))
        graph.parameters[act] = {"n": str(i), "expr": TRICKY}
    graph.derived.add(("ent-3", "ent-0", ""))
    graph.agents["opus"] = {"id": "opus", "name": "OPUS job server", "type": "SoftwareAgent",
                            "email": None, "url": None}
    graph.agents["user-zoë"] = {"id": "user-zoë", "name": f"Zoë {TRICKY}",
                                "type": "Individual", "email": "zoe@example.org", "url": None}
    graph.attributed.add(("ent-3", "user-zoë", "Creator"))
    return graph


EXPECTED_ROWS = {"Activity": 3, "Entity": 4, "Agent": 2, "Used": 3, "WasGeneratedBy": 3,
                 "WasAssociatedWith": 6, "WasAttributedTo": 1, "WasDerivedFrom": 4,
                 "Parameter": 6}


def tables(root: etree._Element) -> dict[str, etree._Element]:
    return {table.get("name"): table for table in root.iterfind(".//v:TABLE", VOT)}


def column(table: etree._Element, name: str) -> list[str | None]:
    names = [field.get("name") for field in table.iterfind("v:FIELD", VOT)]
    index = names.index(name)
    return [tr.findall("v:TD", VOT)[index].text for tr in table.iterfind(".//v:TR", VOT)]


def utypes(table: etree._Element) -> dict[str, str]:
    return {field.get("name"): field.get("utype") for field in table.iterfind("v:FIELD", VOT)}


# --- PROV-VOTABLE --------------------------------------------------------------------------


def test_votable_is_schema_valid_with_one_table_per_class():
    document = graph_to_votable(chain_graph(), NAMESPACE)
    root = etree.fromstring(document)
    schema = votable_schema()
    assert schema.validate(root), schema.error_log
    assert root.get("version") == "1.4"
    resources = root.findall("v:RESOURCE", VOT)
    assert len(resources) == 1 and resources[0].get("type") == "results"
    assert resources[0].get("name") == "provenance"
    found = tables(root)
    assert list(found) == list(EXPECTED_ROWS)
    for name, rows in EXPECTED_ROWS.items():
        assert found[name].get("nrows") == str(rows)
        assert len(found[name].findall(".//v:TR", VOT)) == rows, name
    infos = {info.get("name"): info.get("value") for info in resources[0].iterfind("v:INFO", VOT)}
    assert infos["QUERY_STATUS"] == "OK" and infos["prefix:opus"] == NAMESPACE


def test_votable_utypes_datatypes_and_values():
    found = tables(etree.fromstring(graph_to_votable(chain_graph(), NAMESPACE)))
    assert found["Activity"].get("utype") == "voprov:Activity"
    assert utypes(found["Activity"])["startTime"] == "voprov:Activity.startTime"
    assert utypes(found["Entity"])["location"] == "voprov:Entity.location"
    assert utypes(found["Entity"])["contentType"] == "voprov:DatasetDescription.contentType"
    assert utypes(found["Entity"])["size"] == "opus:Entity.size"
    assert utypes(found["Used"]) == {"activity": "voprov:Activity.id",
                                     "entity": "voprov:Used.entity", "role": "voprov:Used.role"}
    assert utypes(found["Parameter"])["value"] == "voprov:ActivityConfiguration.Parameter.value"
    fields = {f.get("name"): f for f in found["Entity"].iterfind("v:FIELD", VOT)}
    assert fields["size"].get("datatype") == "long"
    assert fields["generatedAtTime"].get("xtype") == "timestamp"
    assert fields["generatedAtTime"].get("datatype") == "char"
    assert fields["name"].get("arraysize") == "*"

    assert column(found["Activity"], "id") == ["opus:act-0", "opus:act-1", "opus:act-2"]
    assert column(found["Activity"], "endTime")[0] == "2024-05-06T07:08:10.250"
    assert column(found["Activity"], "startTime")[0] == "2024-05-06T07:08:09"
    assert column(found["Activity"], "comment")[0] == TRICKY
    assert column(found["Entity"], "size") == [None] + ["12345678901"] * 3
    assert column(found["Entity"], "comment")[0] == TRICKY + "\ufffd"
    assert column(found["Entity"], "name")[0] == f"file0.fits {TRICKY}"
    assert column(found["Agent"], "type") == ["SoftwareAgent", "Person"]
    assert column(found["Agent"], "id") == ["opus:opus", "opus:user-zoë"]
    assert f"input {TRICKY}" in column(found["Used"], "role")
    assert TRICKY in column(found["Parameter"], "value")
    assert column(found["WasDerivedFrom"], "activity").count(None) == 1


def test_votable_leaves_out_empty_classes_and_flags_truncation():
    graph = Graph(truncated=True)
    graph.entities["ent-x"] = {"id": "ent-x", "name": "x"}
    root = etree.fromstring(graph_to_votable(graph, NAMESPACE))
    assert votable_schema().validate(root), votable_schema().error_log
    assert list(tables(root)) == ["Entity"]
    status = root.find(".//v:INFO[@name='QUERY_STATUS']", VOT)
    assert status.get("value") == "OVERFLOW"
    empty = etree.fromstring(graph_to_votable(Graph(), NAMESPACE))
    assert votable_schema().validate(empty) and tables(empty) == {}


def test_votable_is_votlint_clean():
    problems = votlint(graph_to_votable(chain_graph(), NAMESPACE))
    assert [line for line in problems if line.startswith("ERROR")] == []
    assert problems == []  # no WARNING either


# --- DOT and pictures ---------------------------------------------------------------------


def _children() -> dict[int, str]:
    """{pid: name} of this process's live children."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children[int(stat.parent.name)] = name
    return children


_BEFORE: dict[int, str] = {}


@pytest.fixture(autouse=True)
def _children_before_the_test() -> None:
    """Children this test did not start (servers of session fixtures) are not its own."""
    _BEFORE.clear()
    _BEFORE.update(_children())


def child_processes() -> list[str]:
    """Names of the live children started during this test (graphviz ones must all be
    reaped)."""
    return [name for pid, name in _children().items() if pid not in _BEFORE]


def svg_nodes(svg: bytes) -> dict[str, str]:
    """title -> joined label text of each ``<g class="node">``."""
    root = etree.fromstring(svg)
    return {g.findtext("s:title", namespaces=SVG):
            "\n".join("".join(t.itertext()) for t in g.iterfind(".//s:text", SVG))
            for g in root.iterfind(".//s:g[@class='node']", SVG)}


def test_quote_escapes_everything_dot_reads():
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\nb") == '"a\\\\nb"'
    assert quote("a\nb\r\nc") == '"a\\nb\\nc"'
    assert quote("a&b") == '"a&amp;b"'
    assert quote("<x>") == '"<x>"'
    assert quote("\x00") == '"\ufffd"'


def test_dot_uses_prov_styles_and_quoted_ids():
    dot = graph_to_dot(chain_graph(), NAMESPACE)
    assert '"opus:act-0" ["shape"="box", "style"="filled", "fillcolor"="#9FB1FC"' in dot
    assert '"opus:ent-0" ["shape"="ellipse", "style"="filled", "fillcolor"="#FFFC87"' in dot
    assert '"opus:opus" ["shape"="house"' in dot
    assert '"opus:act-0" -> "opus:ent-0" ["label"="used\\n(input say' in dot
    assert '"opus:ent-1" -> "opus:act-0" ["label"="wasGeneratedBy\\n(output)"' in dot
    assert '"label"="wasDerivedFrom"' in dot and '"label"="wasAttributedTo\\n(Creator)"' in dot


@needs_graphviz
def test_svg_has_one_node_group_per_node_with_literal_labels():
    graph = chain_graph()
    nodes = svg_nodes(render(graph_to_dot(graph, NAMESPACE), "svg"))
    expected = {f"opus:{key}" for key in [*graph.activities, *graph.entities, *graph.agents]}
    assert set(nodes) == expected
    assert len([t for t in nodes if t.startswith("opus:act-")]) == 3
    assert len([t for t in nodes if t.startswith("opus:ent-")]) == 4
    assert nodes["opus:ent-0"] == f"file0.fits {TRICKY}\nopus:ent-0"
    assert nodes["opus:user-zoë"].startswith("Zoë say \"hi\" <b> & a&lt;b \\N")
    assert child_processes() == []


@needs_graphviz
def test_png_is_a_png():
    png = render(graph_to_dot(chain_graph(), NAMESPACE), "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@needs_graphviz
def test_injection_in_a_label_stays_one_node():
    graph = Graph()
    evil = '"]; evil [label="x'
    graph.entities["ent-1"] = {"id": "ent-1", "name": evil}
    dot = graph_to_dot(graph, NAMESPACE)
    nodes = svg_nodes(render(dot, "svg"))
    assert list(nodes) == ["opus:ent-1"]
    assert nodes["opus:ent-1"] == f"{evil}\nopus:ent-1"
    assert "evil" not in "".join(etree.fromstring(render(dot, "svg")).xpath(
        "//s:g[@class='node']/s:title/text()", namespaces=SVG)).replace("opus:ent-1", "")


def long_chain(nodes: int = 2000) -> Graph:
    graph = Graph()
    for i in range(nodes):
        if i % 2 == 0:
            graph.entities[f"ent-{i:05d}"] = {"id": f"ent-{i:05d}", "name": f"file {i}"}
        else:
            graph.activities[f"act-{i:05d}"] = {"id": f"act-{i:05d}", "name": f"step {i}"}
            graph.used.add((f"act-{i:05d}", f"ent-{i - 1:05d}", "in"))
            if i + 1 < nodes:
                graph.generated.add((f"ent-{i + 1:05d}", f"act-{i:05d}", "out"))
    return graph


@needs_graphviz
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_2000_node_chain_renders_through_the_fallback(fmt):
    dot = graph_to_dot(long_chain(), NAMESPACE)
    started = time.monotonic()
    picture = render(dot, fmt, timeout=30)
    assert isinstance(picture, bytes) and time.monotonic() - started < 60
    if fmt == "svg":
        assert len(svg_nodes(picture)) == 2000
    else:
        assert picture.startswith(b"\x89PNG")
    assert [n for n in child_processes() if n in {"dot", "sfdp"}] == []


def wide_graph(activities: int = 150) -> Graph:
    """Each activity uses 3 earlier entities and makes 3: hard for ``dot`` (seconds)."""
    import random

    rng = random.Random(1)
    graph = Graph()
    entities = [f"ent-s{i}" for i in range(3)]
    for key in entities:
        graph.entities[key] = {"id": key, "name": key}
    for a in range(activities):
        act = f"act-{a}"
        graph.activities[act] = {"id": act, "name": act}
        for used in rng.sample(entities, 3):
            graph.used.add((act, used, "in"))
        for g in range(3):
            key = f"ent-{a}-{g}"
            graph.entities[key] = {"id": key, "name": key}
            graph.generated.add((key, act, "out"))
            entities.append(key)
    return graph


@needs_graphviz
def test_dot_timeout_falls_back_and_kills_dot():
    dot = graph_to_dot(wide_graph(), NAMESPACE)  # ~600 nodes: dot needs several seconds
    svg = render(dot, "svg", timeout=1.5, large=10**6)
    assert len(svg_nodes(svg)) == 603
    assert [n for n in child_processes() if n in {"dot", "sfdp"}] == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_overrunning_programs_are_killed_with_their_children(monkeypatch):
    # A short sleep, so that a regression (pipes held open by the grandchild) fails in
    # well under a minute instead of hanging; the marker finds it in /proc.
    marker = f"{20 + uuid.uuid4().int % 9}.{uuid.uuid4().int % 10**6:06d}"
    sleeper = [sys.executable, "-c",
               f"import subprocess, time; subprocess.Popen(['sleep', '{marker}']); "
               f"time.sleep(60)"]
    monkeypatch.setattr(render_module, "DOT_PROGRAM", sleeper)
    monkeypatch.setattr(render_module, "FALLBACK_PROGRAM", sleeper)
    started = time.monotonic()
    with pytest.raises(RenderError, match="did not finish in 0.5 s"):
        render('digraph "g" { "a"; }', "svg", timeout=0.5)
    assert time.monotonic() - started < 10
    assert child_processes() == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker.encode() in _read(p)]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, "a grandchild of the renderer survived its timeout"


def test_missing_programs_raise_render_error(monkeypatch):
    monkeypatch.setattr(render_module, "DOT_PROGRAM", ["/nonexistent/dot"])
    monkeypatch.setattr(render_module, "FALLBACK_PROGRAM", ["/nonexistent/sfdp"])
    with pytest.raises(RenderError, match="cannot run /nonexistent/dot.*cannot run"):
        render('digraph "g" { "a"; }', "png")


@needs_graphviz
def test_bad_dot_raises_render_error():
    with pytest.raises(RenderError, match="failed"):
        render("digraph { this is not dot", "svg")
