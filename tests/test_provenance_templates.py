"""Provenance templates (PROV-Template, Moreau et al., IEEE TSE 2018): PROV-N reading,
default templates from ActivityDescriptions, bindings, expansion, the CLI and the routes."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from prov.constants import PROV_ATTR_ENDTIME, PROV_ATTR_STARTTIME, PROV_DERIVATION
from prov.identifier import QualifiedName
from prov.model import PROV_ROLE, PROV_TYPE, PROV, Literal, ProvDocument

from conftest import ROOT, Server, opus_environment
from opus.activities.model import ActivityDescription, EntityDescription, ParameterDescription
from opus.activities.registry import ActivityRegistry
from opus.provenance.template_expansion import expand
from opus.provenance.templates import (
    DEFAULT_NAMESPACE,
    TEMPLATES_DIR,
    TemplateSyntaxError,
    bindings_for_run,
    default_template,
    derivations,
    load_template,
    parse_provn,
)
from opus.storage import tables as t
from opus.storage.provenance_record import bindings_from_record, template_derivations
from opus.storage.tables import metadata

NS = DEFAULT_NAMESPACE
REGISTRY = ActivityRegistry.load(ROOT / "activity_descriptions")
SYNTHETIC = ActivityDescription(
    name="calibrate", version="2.0",
    parameters=(ParameterDescription("alpha", "double", default="1.5"),
                ParameterDescription("mode", "char", default="fast"),
                ParameterDescription("image", "char", default="x")),  # named like an entity
    used=(EntityDescription("raw"), EntityDescription("flat")),
    generated=(EntityDescription("image"), EntityDescription("catalog")),
)

HAND_WRITTEN = r'''// a template written by hand, with most of the PROV-N the templates use
document
  prefix var <http://openprovenance.org/var#>
  prefix vargen <http://openprovenance.org/vargen#>
  prefix tmpl <http://openprovenance.org/tmpl#>
  prefix ex <http://example.org/>
  /* elements, with attribute lists and every kind of literal */
  entity(var:input, [prov:label="raw \"DL3\"\tdata", ex:count=3,
                     ex:ratio="0.5" %% xsd:double, ex:ok="true" %% xsd:boolean,
                     ex:note="""two
lines""", ex:lang="bonjour"@fr, prov:type='ex:Dataset'])
  entity(var:output)
  activity(var:run, 2024-05-01T10:00:00Z, -, [ex:param='var:param'])
  activity(ex:fixed, 2024-05-01T10:00:00+02:00, 2024-05-01T11:00:00+02:00)
  agent(var:who, [prov:type='prov:Person'])
  used(vargen:u; var:run, var:input, -, [prov:role="input"])
  used(var:run, var:input, 2024-05-01T10:00:01Z)
  wasGeneratedBy(var:output, var:run, -)
  wasDerivedFrom(var:output, var:input, var:run, -, -, [prov:type='prov:Revision'])
  wasDerivedFrom(-; var:output, var:input)
  wasAssociatedWith(var:run, var:who, -, [prov:role="Operator"])
  wasAttributedTo(var:output, var:who)
  wasInformedBy(var:run, ex:fixed)
  bundle ex:b1
    entity(ex:inside)
  endBundle
endDocument
'''


def qn(document: ProvDocument, text: str) -> QualifiedName:
    return document.valid_qualified_name(text)


def kinds(document: ProvDocument) -> list[str]:
    return sorted(r.get_type().localpart for r in document.get_records())


def attributes(record) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    result: dict[str, list[str]] = {}
    for name, value in record.attributes:
        result.setdefault(str(name), []).append(str(value))
    return result


# ----------------------------------------------------------------------------- PROV-N


def test_a_hand_written_template_parses_and_round_trips() -> None:
    document = parse_provn(HAND_WRITTEN)
    assert kinds(document).count("Entity") == 2 and kinds(document).count("Usage") == 2
    (entity,) = [r for r in document.get_records()
                 if r.identifier == qn(document, "var:input")]
    values = dict(entity.attributes)
    assert values[qn(document, "prov:label")] == 'raw "DL3"\tdata'
    assert values[qn(document, "ex:count")] == 3
    assert values[qn(document, "ex:ratio")] == 0.5
    assert values[qn(document, "ex:ok")] is True
    assert values[qn(document, "ex:note")] == "two\nlines"
    assert values[qn(document, "ex:lang")] == Literal("bonjour", langtag="fr")
    (run,) = [r for r in document.get_records() if r.identifier == qn(document, "var:run")]
    assert dict(run.attributes)[PROV_ATTR_STARTTIME] == dt.datetime(
        2024, 5, 1, 10, tzinfo=dt.timezone.utc)
    assert dict(run.attributes)[qn(document, "ex:param")] == qn(document, "var:param")
    (usage,) = [r for r in document.get_records() if r.identifier == qn(document, "vargen:u")]
    assert dict(usage.attributes)[PROV_ROLE] == "input"
    assert [b.identifier for b in document.bundles] == [qn(document, "ex:b1")]
    assert parse_provn(document.get_provn()) == document


def test_provs_own_provn_output_parses_back_to_the_same_document() -> None:
    document = ProvDocument()
    document.add_namespace("ex", "http://example.org/")
    start = dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    document.activity("ex:a", start, start + dt.timedelta(hours=1),
                      {"ex:n": 42, "ex:x": 2.5, "ex:flag": False, "ex:q": qn(document, "ex:v"),
                       "prov:label": 'quote " backslash \\ newline \n tab \t end'})
    document.entity("ex:e", {PROV_TYPE: PROV["Collection"], "ex:big": 2 ** 40})
    document.entity("ex:f")
    document.agent("ex:g", {PROV_TYPE: PROV["SoftwareAgent"]})
    document.used("ex:a", "ex:e", start, "ex:u1", {PROV_ROLE: "input"})
    document.wasGeneratedBy("ex:f", "ex:a", None, None, {PROV_ROLE: "output"})
    document.wasDerivedFrom("ex:f", "ex:e", "ex:a")
    document.wasDerivedFrom("ex:f", "ex:e", None, None, None, "ex:d1")
    document.wasAssociatedWith("ex:a", "ex:g", None, None, {PROV_ROLE: "Operator"})
    document.wasAttributedTo("ex:f", "ex:g")
    document.wasInformedBy("ex:a", "ex:a0")
    document.bundle("ex:bundle").entity("ex:inner", {"ex:k": "v"})
    assert parse_provn(document.get_provn()) == document


@pytest.mark.parametrize("text, line", [
    ("document\n  prefix ex <http://example.org/>\n  entity(ex:a\nendDocument\n", 4),
    ("document\n  entity(ex:a)\nendDocument\n", 2),  # undeclared prefix
    ("document\n  prefix ex <http://example.org/>\n\n  entity(ex:a, [ex:b=\"open])\n"
     "endDocument\n", 4),
    ("document\n  prefix ex <http://example.org/>\n  activity(ex:a, yesterday, -)\n"
     "endDocument\n", 3),
])
def test_syntax_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_provn(text)
    assert isinstance(caught.value, ValueError)
    assert caught.value.line == line and caught.value.column > 0
    assert f"line {line}," in str(caught.value)


def test_a_broken_template_file_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "echo.provn").write_text("document\n  entity(var:x\nendDocument\n")
    with pytest.raises(TemplateSyntaxError, match=r"echo\.provn.*line 2"):
        load_template(REGISTRY.get("echo"), tmp_path)


# ----------------------------------------------------------------------------- defaults


def derivation_pairs(document: ProvDocument) -> set[tuple[str, str]]:
    pairs = set()
    for record in document.get_records():
        if record.get_type() == PROV_DERIVATION:
            formal = [str(v) for _, v in record.formal_attributes]
            pairs.add((formal[0], formal[1]))
    return pairs


@pytest.mark.parametrize("name", ["echo", "sleep", "gammapy_maps"])
def test_default_templates_of_the_shipped_activities(name: str) -> None:
    activity = REGISTRY.get(name)
    template = default_template(activity)
    records = {str(r.identifier): r for r in template.get_records() if r.identifier}
    assert "var:activity" in records and "var:agent" in records
    for entity in activity.generated:
        assert f"var:{entity.name}" in records
    generations = [r for r in template.get_records() if r.get_type().localpart == "Generation"]
    assert sorted(str(dict(r.attributes)[PROV_ROLE]) for r in generations) == sorted(
        e.name for e in activity.generated)
    assert derivation_pairs(template) == set()  # these activities declare no used entity
    activity_attributes = attributes(records["var:activity"])
    for parameter in activity.parameters:
        assert activity_attributes[f"param:{parameter.name}"] == [f"var:{parameter.name}"]
    (association,) = [r for r in template.get_records()
                      if r.get_type().localpart == "Association"]
    assert attributes(association)["prov:role"] == ["Operator"]
    # It is PROV-N that reads back as itself.
    assert parse_provn(template.get_provn()) == template


def test_default_template_of_an_activity_with_two_inputs_and_two_outputs() -> None:
    template = default_template(SYNTHETIC)
    assert derivation_pairs(template) == {(f"var:{g}", f"var:{u}") for g in ("image", "catalog")
                                         for u in ("raw", "flat")}
    usages = [r for r in template.get_records() if r.get_type().localpart == "Usage"]
    assert sorted(attributes(r)["prov:role"][0] for r in usages) == ["flat", "raw"]
    (activity,) = [r for r in template.get_records() if str(r.identifier) == "var:activity"]
    # The parameter named like an entity gets a variable of its own.
    assert attributes(activity)["param:image"] == ["var:param_image"]
    assert attributes(activity)["param:alpha"] == ["var:alpha"]


def test_load_template_prefers_the_file_and_falls_back_to_the_default(tmp_path: Path) -> None:
    echo = REGISTRY.get("echo")
    assert load_template(echo, tmp_path) == default_template(echo)
    assert load_template(echo, TEMPLATES_DIR) == parse_provn(
        (TEMPLATES_DIR / "echo.provn").read_text())
    assert load_template(echo, TEMPLATES_DIR) != default_template(echo)


# ----------------------------------------------------------------------------- expansion

START = dt.datetime(2024, 5, 1, 10, 0, 0)
END = dt.datetime(2024, 5, 1, 10, 5, 0)


def synthetic_bindings(**roles: list[str]) -> dict:
    used = {role: roles.get(role, [f"ent-{role}"]) for role in ("raw", "flat")}
    generated = {role: roles.get(role, [f"ent-{role}"]) for role in ("image", "catalog")}
    return bindings_for_run(
        "act-0001", used, generated, {"alpha": "2.5", "mode": "slow", "image": "big"},
        "user-alice", START, END, NS,
        datatypes={p.name: p.datatype for p in SYNTHETIC.parameters},
        entity_names=[e.name for e in (*SYNTHETIC.used, *SYNTHETIC.generated)])


def test_bindings_are_bindings_v3() -> None:
    bindings = synthetic_bindings()
    assert bindings["context"] == {"opus": NS}
    variables = bindings["var"]
    assert variables["activity"] == [{"@id": "opus:act-0001"}]
    assert variables["raw"] == [{"@id": "opus:ent-raw"}]
    assert variables["alpha"] == [{"@value": "2.5", "@type": "xsd:double"}]
    assert variables["param_image"] == [{"@value": "big", "@type": "xsd:string"}]
    assert variables["image"] == [{"@id": "opus:ent-image"}]
    assert variables["agent"] == [{"@id": "opus:user-alice"}]
    assert variables["startTime"] == [{"@value": "2024-05-01T10:00:00+00:00",
                                       "@type": "xsd:dateTime"}]


def test_expansion_with_single_values() -> None:
    expanded = expand(default_template(SYNTHETIC), synthetic_bindings())
    text = expanded.get_provn()
    assert "var:" not in text and "tmpl:" not in text and "vargen" not in text
    records = {str(r.identifier): r for r in expanded.get_records() if r.identifier}
    run = records["opus:act-0001"]
    values = dict(run.attributes)
    assert values[PROV_ATTR_STARTTIME] == START.replace(tzinfo=dt.timezone.utc)
    assert values[PROV_ATTR_ENDTIME] == END.replace(tzinfo=dt.timezone.utc)
    run_attributes = {str(k): v for k, v in run.attributes}
    assert run_attributes["param:alpha"] == 2.5 and run_attributes["param:mode"] == "slow"
    assert run_attributes["param:image"] == "big"
    assert derivations(expanded) == sorted(
        (f"ent-{g}", f"ent-{u}") for g in ("image", "catalog") for u in ("raw", "flat"))
    assert "opus:user-alice" in records
    # The expansion is a plain PROV document: it survives PROV-JSON and PROV-N.
    assert ProvDocument.deserialize(content=expanded.serialize(format="json"),
                                    format="json") == expanded
    assert parse_provn(expanded.get_provn()) == expanded


def test_expansion_repeats_statements_for_multiple_values() -> None:
    bindings = synthetic_bindings(raw=["ent-r1", "ent-r2", "ent-r3"], image=["ent-i1", "ent-i2"])
    expanded = expand(default_template(SYNTHETIC), bindings)
    pairs = derivations(expanded)
    # wasDerivedFrom(var:image, var:raw): the cartesian product of independent variables.
    assert {p for p in pairs if p[1].startswith("ent-r")} == {
        (i, r) for i in ("ent-i1", "ent-i2", "ent-catalog") for r in ("ent-r1", "ent-r2",
                                                                    "ent-r3")}
    usages = [r for r in expanded.get_records() if r.get_type().localpart == "Usage"]
    assert len(usages) == 4  # raw x3, flat x1
    entities = [r for r in expanded.get_records() if r.get_type().localpart == "Entity"]
    assert len(entities) == 3 + 1 + 2 + 1


LINKED = '''document
  prefix var <http://openprovenance.org/var#>
  prefix vargen <http://openprovenance.org/vargen#>
  prefix tmpl <http://openprovenance.org/tmpl#>
  prefix ex <http://example.org/>
  activity(var:run)
  entity(var:in)
  entity(var:out, [tmpl:linked='var:in', ex:size='var:size'])
  entity(var:log)
  wasGeneratedBy(vargen:gen; var:out, var:run, -)
  entity(vargen:gen, [tmpl:linked='var:out'])
  wasDerivedFrom(var:out, var:in, var:run, -, -)
  wasDerivedFrom(var:log, var:in, var:run, -, -)
  activity(var:other, [ex:note='var:note', tmpl:startTime='var:start'])
  wasDerivedFrom(var:out, var:in, var:unbound, -, -, [ex:why='var:why'])
endDocument
'''


def test_linked_variables_are_zipped_and_vargen_gets_fresh_ids() -> None:
    template = parse_provn(LINKED)
    counter = iter(range(100))
    expanded = expand(template, {
        "var": {"run": [{"@id": "ex:run"}],
                "in": [{"@id": "ex:in1"}, {"@id": "ex:in2"}, {"@id": "ex:in3"}],
                "out": [{"@id": "ex:out1"}, {"@id": "ex:out2"}, {"@id": "ex:out3"}],
                "log": [{"@id": "ex:log"}],
                "size": [[{"@value": "10", "@type": "xsd:int"}], [], [{"@value": "30",
                                                                     "@type": "xsd:int"}]]},
        "context": {"ex": "http://example.org/"}}, fresh=lambda: f"id{next(counter)}")
    pairs = derivations(expanded, namespace="http://example.org/")
    zipped = {("out1", "in1"), ("out2", "in2"), ("out3", "in3")}
    # out and in are linked: one instance per index, not nine; log is not: all three.
    assert set(pairs) == zipped | {("log", "in1"), ("log", "in2"), ("log", "in3")}
    generations = [r for r in expanded.get_records() if r.get_type().localpart == "Generation"]
    assert len({str(r.identifier) for r in generations}) == 3  # one fresh id per output
    assert all(str(r.identifier).startswith("uuid:id") for r in generations)
    sizes = {str(r.identifier): [v for k, v in r.attributes if str(k) == "ex:size"]
             for r in expanded.get_records() if str(r.identifier).startswith("ex:out")}
    assert sizes == {"ex:out1": [10], "ex:out2": [], "ex:out3": [30]}
    text = expanded.get_provn()
    assert "tmpl:" not in text and "var:" not in text


def test_linked_variables_with_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="linked variables"):
        expand(parse_provn(LINKED), {"var": {
            "run": [{"@id": "ex:run"}], "in": [{"@id": "ex:a"}, {"@id": "ex:b"}],
            "out": [{"@id": "ex:c"}]}, "context": {"ex": "http://example.org/"}})


def test_unbound_variables_drop_statements_and_attributes() -> None:
    expanded = expand(parse_provn(LINKED), {"var": {
        "run": [{"@id": "ex:run"}], "in": [{"@id": "ex:a"}], "out": [],
        "other": [{"@id": "ex:other"}]}, "context": {"ex": "http://example.org/"}})
    identifiers = {str(r.identifier) for r in expanded.get_records() if r.identifier}
    # var:out bound to nothing and var:log absent: their statements are gone ...
    assert "ex:log" not in identifiers and not derivations(expanded, "http://example.org/")
    assert not [r for r in expanded.get_records() if r.get_type().localpart == "Generation"]
    # ... and so are attributes whose variable is unbound; the statement itself stays.
    (other,) = [r for r in expanded.get_records() if str(r.identifier) == "ex:other"]
    assert attributes(other) == {}


def test_an_unbound_optional_position_becomes_a_marker() -> None:
    expanded = expand(parse_provn(LINKED), {"var": {
        "in": [{"@id": "ex:a"}], "out": [{"@id": "ex:b"}]},
        "context": {"ex": "http://example.org/"}})
    derived = [r for r in expanded.get_records() if r.get_type() == PROV_DERIVATION]
    # var:run is unbound: wasDerivedFrom keeps its two entities, without the activity.
    assert derived and all(r.formal_attributes[2][1] is None for r in derived)
    assert derivations(expanded, None) == [("http://example.org/b", "http://example.org/a")]


def test_gammapy_maps_template_without_dl3_inputs() -> None:
    gammapy = REGISTRY.get("gammapy_maps")
    template = load_template(gammapy, TEMPLATES_DIR)
    generated = {e.name: [f"ent-{e.name}"] for e in gammapy.generated}
    bindings = bindings_for_run("act-g", {}, generated,
                                {"datastore": "/data/dl3", "ra": "83.63", "nbins": "10"},
                                "user-bob", START, END,
                                datatypes={p.name: p.datatype for p in gammapy.parameters})
    expanded = expand(template, bindings)
    assert derivations(expanded) == sorted([
        ("ent-excess", "ent-counts"), ("ent-excess", "ent-background"),
        ("ent-significance", "ent-counts"), ("ent-significance", "ent-background"),
        ("ent-preview", "ent-significance"),
        *[("ent-summary", f"ent-{m}") for m in ("counts", "exposure", "background", "excess",
                                                 "significance")]])
    assert not [r for r in expanded.get_records() if r.get_type().localpart == "Usage"]
    (run,) = [r for r in expanded.get_records() if str(r.identifier) == "opus:act-g"]
    values = {str(k): v for k, v in run.attributes}
    assert values["param:datastore"] == "/data/dl3" and values["param:ra"] == 83.63
    assert values["param:nbins"] == 10 and "param:emin" not in values  # not bound
    # With DL3 inputs, counts/exposure/background/summary derive from each of them.
    with_dl3 = expand(template, bindings_for_run("act-g", {"dl3": ["ent-o1", "ent-o2"]},
                                                 generated, {}, None, None, None))
    from_dl3 = {p for p in derivations(with_dl3) if p[1].startswith("ent-o")}
    assert from_dl3 == {(f"ent-{m}", o) for m in ("counts", "exposure", "background",
                                                   "summary") for o in ("ent-o1", "ent-o2")}


def test_echo_template_shows_the_text_and_derives_nothing() -> None:
    echo = REGISTRY.get("echo")
    expanded = expand(load_template(echo, TEMPLATES_DIR), bindings_for_run(
        "act-e", {}, {"output": ["ent-out"]}, {"text": "hello"}, "anonymous", START, END))
    assert derivations(expanded) == []
    texts = {str(r.identifier): [str(v) for k, v in r.attributes if str(k) == "param:text"]
             for r in expanded.get_records() if r.identifier}
    assert texts["opus:act-e"] == ["hello"] and texts["opus:ent-out"] == ["hello"]


# ----------------------------------------------------------------------------- the record


def test_bindings_and_derivations_from_the_sql_record() -> None:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(t.prov_activity.insert().values(
            id="act-j1", name="calibrate", job_id="j1", start_time=START, end_time=END))
        connection.execute(t.prov_entity.insert(), [{"id": i} for i in (
            "ent-r", "ent-f", "ent-i", "ent-c")])
        connection.execute(t.prov_used.insert(), [
            {"activity_id": "act-j1", "entity_id": "ent-r", "role": "raw"},
            {"activity_id": "act-j1", "entity_id": "ent-f", "role": "flat"}])
        connection.execute(t.prov_was_generated_by.insert(), [
            {"activity_id": "act-j1", "entity_id": "ent-i", "role": "image"},
            {"activity_id": "act-j1", "entity_id": "ent-c", "role": "catalog"},
            {"activity_id": "act-j1", "entity_id": "ent-gone", "role": "catalog"}])
        connection.execute(t.prov_parameter.insert(), [
            {"activity_id": "act-j1", "name": "alpha", "value": "3"},
            {"activity_id": "act-j1", "name": "image", "value": "big"}])
        connection.execute(t.prov_was_associated_with.insert(), [
            {"activity_id": "act-j1", "agent_id": "opus", "role": "Provider"},
            {"activity_id": "act-j1", "agent_id": "user-a", "role": "Operator"}])
        bindings = bindings_from_record(connection, "act-j1", NS, SYNTHETIC)
        assert bindings_from_record(connection, "act-none", NS) is None
        rows = template_derivations(connection, "act-j1", SYNTHETIC, Path("/nonexistent"))
    variables = bindings["var"]
    assert variables["raw"] == [{"@id": "opus:ent-r"}]
    assert variables["catalog"] == [{"@id": "opus:ent-c"}, {"@id": "opus:ent-gone"}]
    assert variables["alpha"] == [{"@value": "3", "@type": "xsd:double"}]
    assert variables["param_image"] == [{"@value": "big", "@type": "xsd:string"}]
    assert variables["agent"] == [{"@id": "opus:user-a"}]
    # Every output from every input (the default template), only for recorded entities.
    assert sorted((r["generated_entity_id"], r["used_entity_id"]) for r in rows) == sorted(
        (g, u) for g in ("ent-i", "ent-c") for u in ("ent-r", "ent-f"))
    assert {r["activity_id"] for r in rows} == {"act-j1"}


def test_a_broken_template_falls_back_to_the_default_for_the_record(tmp_path: Path) -> None:
    (tmp_path / "calibrate.provn").write_text("document\n  entity(\nendDocument\n")
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(t.prov_activity.insert().values(id="act-j2", name="calibrate"))
        connection.execute(t.prov_entity.insert(), [{"id": "ent-r"}, {"id": "ent-i"}])
        connection.execute(t.prov_used.insert().values(activity_id="act-j2", entity_id="ent-r",
                                                  role="raw"))
        connection.execute(t.prov_was_generated_by.insert().values(
            activity_id="act-j2", entity_id="ent-i", role="image"))
        rows = template_derivations(connection, "act-j2", SYNTHETIC, tmp_path)
    assert [(r["generated_entity_id"], r["used_entity_id"]) for r in rows] == [
        ("ent-i", "ent-r")]


# ----------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opus.cli", "provenance", "template", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=opus_environment())


def test_cli_prints_the_template() -> None:
    done = run_cli("echo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("document") and "param:text='var:text'" in done.stdout
    assert parse_provn(done.stdout) == load_template(REGISTRY.get("echo"), TEMPLATES_DIR)
    done = run_cli("sleep")  # no file: the default one
    assert done.returncode == 0, done.stderr
    assert parse_provn(done.stdout) == default_template(REGISTRY.get("sleep"))


def test_cli_refuses_an_unknown_activity() -> None:
    done = run_cli("no_such_activity")
    assert done.returncode == 1
    assert "no activity named 'no_such_activity'" in done.stderr and done.stdout == ""


# ----------------------------------------------------------------------------- HTTP


def test_template_route(server: Server) -> None:
    response = server.session.get(f"{server.url}/provenance/templates/gammapy_maps")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/provenance-notation")
    assert parse_provn(response.text) == load_template(REGISTRY.get("gammapy_maps"),
                                                       TEMPLATES_DIR)
    missing = server.session.get(f"{server.url}/provenance/templates/nothing")
    assert missing.status_code == 404 and "nothing" in missing.text


def test_bindings_route_of_a_finished_echo_job(server: Server) -> None:
    job_url = server.create("echo", text="bind me")
    server.wait_final(job_url)
    job_id = job_url.rsplit("/", 1)[1]
    response = server.session.get(f"{server.url}/provenance/bindings/{job_id}")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    bindings = response.json()
    variables = bindings["var"]
    assert variables["text"] == [{"@value": "bind me", "@type": "xsd:string"}]
    assert variables["activity"] == [{"@id": f"opus:act-{job_id}"}]
    assert bindings["context"]["opus"] == NS
    # The output entity is the one ProvSAP reports for the job.
    provsap = server.session.get(f"{server.url}/provsap", params={
        "ID": job_id, "DIRECTION": "FORTH", "RESPONSEFORMAT": "json"})
    assert provsap.status_code == 200, provsap.text
    document = ProvDocument.deserialize(io.BytesIO(provsap.content), format="json")
    outputs = [str(r.identifier) for r in document.get_records()
               if r.get_type().localpart == "Entity"
               and ("prov:label", "output") in [(str(k), str(v)) for k, v in r.attributes]]
    assert variables["output"] == [{"@id": outputs[0]}] and len(outputs) == 1
    # Expanding the served template with the served bindings describes the run.
    template = parse_provn(server.session.get(
        f"{server.url}/provenance/templates/echo").text)
    expanded = expand(template, bindings)
    (generation,) = [r for r in expanded.get_records()
                     if r.get_type().localpart == "Generation"]
    assert [str(v) for _, v in generation.formal_attributes[:2]] == [
        outputs[0], f"opus:act-{job_id}"]


def test_bindings_route_without_a_record(server: Server) -> None:
    pending = server.create("echo", run=False, text="not yet")
    job_id = pending.rsplit("/", 1)[1]
    for ident in (job_id, "0" * 32, "x" * 200):
        response = server.session.get(f"{server.url}/provenance/bindings/{ident}")
        assert response.status_code == 404, (ident, response.text)
