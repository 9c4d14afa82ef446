"""ActivityDescription files: both dialects, errors with line numbers, writer, registry."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
from lxml import etree

from opus.activities.check import check_files
from opus.activities.model import EntityDescription, Option
from opus.activities.registry import ActivityRegistry
from opus.activities.votable import (
    ActivityDescriptionError,
    parse_activity,
    read_activity,
    write_activity,
)
from opus.errors import NotFoundError
from vochecks import votable_schema

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "examples" / "opus-activity-descriptions"
ACTIVITIES = ROOT / "activity_descriptions"
ALL_FILES = [
    EXAMPLES / "write_note_vot.xml",
    EXAMPLES / "append_note_vot.xml",
    ACTIVITIES / "echo.xml",
    ACTIVITIES / "sleep.xml",
]


def votable(body: str, namespace: str = "http://www.ivoa.net/xml/VOTable/v1.3") -> bytes:
    """A VOTable around ``body``; the RESOURCE opens on line 2 so line numbers are simple."""
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return (f'<VOTABLE{xmlns} version="1.3">\n{body}\n</VOTABLE>\n').encode()


MINIMAL = """<RESOURCE name="mini" type="meta" utype="voprov:ActivityDescription">
<PARAM name="command" datatype="char" arraysize="*" utype="opus:ActivityDescription.command" value="bin/run --flag 'two words'"/>
</RESOURCE>"""


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return votable_schema()


def test_old_dialect_example_1_loads():
    activity = read_activity(EXAMPLES / "write_note_vot.xml")
    assert activity.name == "write_note"
    assert activity.description == "Example in the older OPUS dialect: writes a note to a text file"
    assert (activity.version, activity.type, activity.subtype) == ("0.3", "example", "notes")
    assert activity.docurl is None  # doculink value is empty
    assert (activity.contact_name, activity.contact_email) == ("opus-tests", "tests@opus.invalid")
    assert (activity.execution_duration, activity.quote) == (30, 2)
    assert activity.script == "umask 022\necho $note > $note_file\n"  # CRLF normalised
    assert activity.command == ()
    [note] = activity.parameters
    assert (note.name, note.datatype, note.arraysize, note.default) == \
        ("note", "char", "*", "Clear sky over the array")
    assert note.description == "The note to write"
    assert not note.required
    assert activity.used == ()
    assert activity.generated == (
        EntityDescription(name="note_file", content_type="text/plain", default_filename="note.txt",
                          description="Text file holding the note"),
    )
    assert activity.source == EXAMPLES / "write_note_vot.xml"


def test_old_dialect_example_2_loads_used_entity():
    activity = read_activity(EXAMPLES / "append_note_vot.xml")
    # CRLF and a lone CR normalised
    assert activity.script == "cat $notes > $journal\necho $note >> $journal\n"
    assert activity.docurl == "https://opus.invalid/doc/append_note.html"  # from doculink
    assert activity.parameter("NOTE").default == "(end)"
    [used] = activity.used
    assert used == EntityDescription(name="notes", default_filename="notes.txt",
                                     description="Text file the note is appended to")
    assert [e.name for e in activity.generated] == ["journal"]


def test_echo_description():
    activity = read_activity(ACTIVITIES / "echo.xml")
    assert activity.name == "echo"
    assert activity.command == ("scripts/echo.sh",)
    assert activity.script is None
    assert (activity.execution_duration, activity.quote) == (60, 1)
    [text] = activity.parameters
    assert (text.name, text.datatype, text.arraysize, text.required) == ("text", "char", "*", True)
    assert text.description
    [output] = activity.generated
    assert (output.name, output.default_filename, output.content_type) == ("output", "output.txt", "text/plain")
    assert (ROOT / "scripts" / "echo.sh").stat().st_mode & 0o111


def test_sleep_description():
    activity = read_activity(ACTIVITIES / "sleep.xml")
    assert activity.command == ("scripts/sleep.sh",)
    assert (activity.execution_duration, activity.quote) == (3600, 10)
    [duration] = activity.parameters
    assert (duration.datatype, duration.unit, duration.default) == ("double", "s", "1")
    assert (duration.minimum, duration.maximum) == ("0", "3600")
    assert duration.minimum_inclusive and duration.maximum_inclusive
    assert activity.generated[0].default_filename == "output.txt"
    assert (ROOT / "scripts" / "sleep.sh").stat().st_mode & 0o111


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_round_trip(path: Path):
    activity = read_activity(path)
    again = parse_activity(write_activity(activity))
    assert again == activity
    assert parse_activity(write_activity(again)) == activity


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_written_votable_is_valid_votable_1_4(path: Path, schema: etree.XMLSchema):
    document = etree.fromstring(write_activity(read_activity(path)))
    assert document.get("version") == "1.4"
    assert document.tag == "{http://www.ivoa.net/xml/VOTable/v1.3}VOTABLE"
    assert schema.validate(document), schema.error_log


def test_written_old_dialect_uses_rec_names():
    written = etree.fromstring(write_activity(read_activity(EXAMPLES / "append_note_vot.xml")))
    ns = {"v": "http://www.ivoa.net/xml/VOTable/v1.3"}
    resource = written.find("v:RESOURCE", ns)
    assert resource.get("utype") == "voprov:ActivityDescription"
    assert resource.find("v:PARAM[@name='script']", ns) is not None
    assert resource.find("v:PARAM[@name='docurl']", ns).get("value") == \
        "https://opus.invalid/doc/append_note.html"
    assert resource.find("v:PARAM[@name='doculink']", ns) is None
    assert resource.find("v:GROUP[@name='inputParams']/v:PARAM[@name='note']", ns) is not None
    assert resource.find("v:GROUP[@utype='voprov:UsageDescription']", ns).get("name") == "notes"
    assert resource.find("v:GROUP[@utype='voprov:GenerationDescription']", ns).get("name") == "journal"


def test_rec_dialect_full_parameter_round_trip(schema: etree.XMLSchema):
    body = MINIMAL.replace("</RESOURCE>", """<GROUP name="inputParams">
<PARAM name="mode" datatype="char" arraysize="8*" value="fast" ucd="meta.code" utype="x:mode" xtype="x">
<DESCRIPTION>Speed</DESCRIPTION>
<VALUES><OPTION value="fast" name="Fast"/><OPTION value="slow"/></VALUES>
</PARAM>
<PARAM name="level" datatype="float" value="" unit="deg">
<VALUES><MIN value="0" inclusive="no"/><MAX value="90"/></VALUES>
</PARAM>
</GROUP>
<GROUP name="data" utype="voprov:UsageDescription">
<PARAM name="role" datatype="char" arraysize="*" utype="voprov:UsageDescription.role" value="events"/>
<PARAM name="multiplicity" datatype="char" arraysize="*" utype="voprov:UsageDescription.multiplicity" value="1..*"/>
<PARAM name="contentType" datatype="char" arraysize="*" utype="voprov:DatasetDescription.contentType" value="application/fits"/>
</GROUP>
</RESOURCE>""")
    activity = parse_activity(votable(body))
    assert activity.command == ("bin/run", "--flag", "two words")
    mode, level = activity.parameters
    assert mode.options == (Option("fast", "Fast"), Option("slow"))
    assert (mode.arraysize, mode.ucd, mode.utype, mode.xtype, mode.description) == ("8*", "meta.code", "x:mode", "x", "Speed")
    assert (level.minimum, level.minimum_inclusive, level.maximum, level.maximum_inclusive) == ("0", False, "90", True)
    assert level.required and level.unit == "deg"
    [data] = activity.used
    assert (data.role, data.multiplicity, data.content_type) == ("events", "1..*", "application/fits")
    written = write_activity(activity)
    assert parse_activity(written) == activity
    assert schema.validate(etree.fromstring(written)), schema.error_log


@pytest.mark.parametrize("namespace", ["", "http://www.ivoa.net/xml/VOTable/v1.1",
                                       "http://www.ivoa.net/xml/VOTable/v1.2",
                                       "http://www.ivoa.net/xml/VOTable/v1.3"])
def test_any_votable_namespace_is_accepted(namespace: str):
    assert parse_activity(votable(MINIMAL, namespace)).name == "mini"


def test_foreign_namespace_is_rejected():
    with pytest.raises(ActivityDescriptionError, match="not a VOTable"):
        parse_activity(votable(MINIMAL, "http://example.org/other"))


BROKEN = """<RESOURCE type="meta" utype="voprov:ActivityDescription">
<PARAM name="executionDuration" datatype="int" utype="uws:Job.executionDuration" value="ten"/>
<GROUP name="inputParams">
<PARAM name="a" datatype="floatComplex" value=""/>
<PARAM name="b" datatype="int" value="">
<VALUES><MIN value="10"/><MAX value="1"/></VALUES>
</PARAM>
<PARAM name="c" datatype="int" value="x"/>
<PARAM name="C" datatype="char" arraysize="*" value=""/>
<PARAM name="d" datatype="char" value="z"><VALUES><OPTION value="x"/><OPTION value="y"/></VALUES></PARAM>
</GROUP>
<GROUP name="out" utype="voprov:GenerationDescription"/>
<GROUP name="out" utype="voprov:GenerationDescription"/>
</RESOURCE>"""


def test_broken_file_reports_every_problem_with_its_line(tmp_path: Path):
    path = tmp_path / "broken.xml"
    path.write_bytes(votable(BROKEN))
    with pytest.raises(ActivityDescriptionError) as caught:
        read_activity(path)
    found = [(p.line, p.message) for p in caught.value.problems]
    expected = [
        (2, "no name"),
        (2, "no command and no script"),
        (3, "executionDuration must be a whole number of seconds (got 'ten')"),
        (5, "a: unsupported datatype 'floatComplex'"),
        (7, "b: MIN 10 is greater than MAX 1"),
        (9, "c: default 'x' is not valid: must be an integer (got 'x')"),
        (10, "duplicate parameter name 'C' (first on line 9)"),
        (11, "d: default 'z' is not valid: must be one of: x, y (got 'z')"),
        (14, "duplicate entity name 'out' (first on line 13)"),
    ]
    for line, text in expected:
        assert any(l == line and text in m for l, m in found), (line, text, found)
    assert len(found) == len(expected)
    message = str(caught.value)
    assert f"{path}:3: executionDuration" in message
    assert f"{path}:14: duplicate entity" in message


def test_xml_syntax_error_has_line(tmp_path: Path):
    path = tmp_path / "bad.xml"
    path.write_text('<VOTABLE>\n<RESOURCE name="x">\n</VOTABLE>\n')
    with pytest.raises(ActivityDescriptionError) as caught:
        read_activity(path)
    [first, *_] = caught.value.problems
    assert first.line == 3 and "XML syntax error" in first.message


@pytest.mark.parametrize("body, message", [
    ("<RESOURCE name='x'/>", "no RESOURCE with utype"),
    (MINIMAL.replace('name="mini"', 'name="a b"'), "may only contain"),
    (MINIMAL.replace("</RESOURCE>", '<PARAM name="script" datatype="char" arraysize="*" value="ls"/></RESOURCE>'),
     "both command and script"),
    (MINIMAL.replace("'two words'", "'unbalanced"), "command cannot be split"),
    (MINIMAL.replace("</RESOURCE>", '<PARAM name="quote" datatype="int" value="-1"/></RESOURCE>'),
     "quote must not be negative"),
    (MINIMAL.replace("</RESOURCE>", '<GROUP name="inputParams"><PARAM name="PATH" datatype="char" value="x"/></GROUP></RESOURCE>'),
     "reserved"),
    (MINIMAL.replace("</RESOURCE>", '<GROUP name="inputParams"><PARAM name="a-b" datatype="char" value="x"/></GROUP></RESOURCE>'),
     "environment variable"),
    (MINIMAL.replace("</RESOURCE>", '<GROUP name="inputParams"><PARAM name="n" datatype="int" value="200"><VALUES><MAX value="100"/></VALUES></PARAM></GROUP></RESOURCE>'),
     "n: default '200' is not valid: must be at most 100 (got 200)"),
    (MINIMAL.replace("</RESOURCE>", '<GROUP name="inputParams"><PARAM name="n" datatype="int" value="1"><VALUES><OPTION value="one"/></VALUES></PARAM></GROUP></RESOURCE>'),
     "OPTION 'one' is not valid"),
    (MINIMAL.replace("</RESOURCE>", '<GROUP name="inputParams"><PARAM name="n" datatype="char" arraysize="2x3" value=""/></GROUP></RESOURCE>'),
     "unsupported arraysize"),
    (MINIMAL.replace("</RESOURCE>", '<GROUP name="o" utype="voprov:GenerationDescription"><PARAM name="defaultFileName" datatype="char" arraysize="*" value="../etc/passwd"/></GROUP></RESOURCE>'),
     "relative path inside the job directory"),
])
def test_single_problems(body: str, message: str):
    with pytest.raises(ActivityDescriptionError, match=re.escape(message)):
        parse_activity(votable(body))


def test_registry_skips_broken_and_duplicate_files(tmp_path: Path, caplog):
    shutil.copy(ACTIVITIES / "echo.xml", tmp_path / "a_echo.xml")
    shutil.copy(ACTIVITIES / "echo.xml", tmp_path / "b_echo_again.xml")
    shutil.copy(ACTIVITIES / "sleep.xml", tmp_path / "sleep.xml")
    (tmp_path / "broken.xml").write_bytes(votable(BROKEN))
    (tmp_path / "notes.txt").write_text("not a description")
    with caplog.at_level(logging.ERROR, logger="opus.activities"):
        registry = ActivityRegistry.load(tmp_path)
    assert registry.names() == ["echo", "sleep"]
    assert "echo" in registry and "broken" not in registry
    assert [a.name for a in registry] == ["echo", "sleep"]
    assert registry.get("echo").source == tmp_path / "a_echo.xml"
    assert set(registry.problems) == {tmp_path / "broken.xml", tmp_path / "b_echo_again.xml"}
    assert "already defined" in str(registry.problems[tmp_path / "b_echo_again.xml"])
    assert any("broken.xml" in record.getMessage() for record in caplog.records)
    with pytest.raises(NotFoundError, match="no activity named 'nope'"):
        registry.get("nope")


def test_check_files(tmp_path: Path, capsys):
    broken = tmp_path / "broken.xml"
    broken.write_bytes(votable(BROKEN))
    assert check_files([ACTIVITIES / "echo.xml"]) == 0
    assert capsys.readouterr().out == f"{ACTIVITIES / 'echo.xml'}: OK (activity echo)\n"
    assert check_files([ACTIVITIES / "sleep.xml", broken]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{ACTIVITIES / 'sleep.xml'}: OK (activity sleep)"
    assert f"{broken}:3: executionDuration must be a whole number of seconds (got 'ten')" in lines
    assert len(lines) == 1 + 9
    assert check_files([tmp_path / "missing.xml"]) == 1
    assert "cannot read" in capsys.readouterr().out
