"""Checks of the VO documents OPUS serves: ``stilts votlint``, ``stilts datalinklint`` and
the VOTable 1.4 schema (the copy astropy ships in ``astropy/io/votable/data``).

``votlint`` comes from the Debian package ``stilts`` (scripts/system_deps.sh installs it).
Without it the calling test is skipped, unless ``OPUS_REQUIRE_STILTS=1`` (CI), where it
fails. votlint and datalinklint exit 0 even when they find errors, so their output is read
instead.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import shutil
import subprocess
import tempfile

import pytest
from lxml import etree

#: The VOTable XSDs astropy ships (VOTable.v1.1.xsd ... VOTable.v1.5.xsd).
VOTABLE_SCHEMAS = importlib.resources.files("astropy.io.votable") / "data"


def stilts() -> str:
    """The stilts program, or skip (fail with OPUS_REQUIRE_STILTS=1) when it is missing."""
    path = shutil.which("stilts")
    if path is None:
        if os.environ.get("OPUS_REQUIRE_STILTS") == "1":
            pytest.fail("stilts required (OPUS_REQUIRE_STILTS=1) but not installed")
        pytest.skip("stilts not installed (Debian package stilts)")
    return path


def votlint(document: bytes) -> list[str]:
    """The ERROR and WARNING lines ``stilts votlint`` reports for ``document``."""
    program = stilts()
    with tempfile.NamedTemporaryFile(suffix=".vot.xml") as file:
        file.write(document)
        file.flush()
        done = subprocess.run([program, "votlint", f"votable={file.name}"],
                              capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"votlint failed ({done.returncode}):\n{output}"
    return [line for line in output.splitlines()
            if line.startswith(("ERROR", "WARNING"))]


def datalinklint(document: bytes) -> list[str]:
    """The error, warning and failure lines ``stilts datalinklint`` reports for a DataLink
    {links} response (report codes ``E-``, ``W-``, ``F-``; ``I-`` and ``S-`` are information
    and summaries)."""
    program = stilts()
    with tempfile.NamedTemporaryFile(suffix=".vot.xml") as file:
        file.write(document)
        file.flush()
        done = subprocess.run([program, "datalinklint", "format=text", "report=EWF",
                               f"votable={file.name}"],
                              capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"datalinklint failed ({done.returncode}):\n{output}"
    assert "Totals:" in output, f"datalinklint gave no report:\n{output}"
    return [line for line in output.splitlines() if line.startswith(("E-", "W-", "F-"))]


@functools.lru_cache(maxsize=1)
def votable_schema() -> etree.XMLSchema:
    """The VOTable 1.4 schema (namespace ``http://www.ivoa.net/xml/VOTable/v1.3``)."""
    with importlib.resources.as_file(VOTABLE_SCHEMAS / "VOTable.v1.4.xsd") as path:
        return etree.XMLSchema(etree.parse(str(path), etree.XMLParser(no_network=True)))


def assert_valid_votable(document: bytes) -> etree._Element:
    """Parse ``document``, assert it is valid VOTable 1.4 and votlint-clean; return its root."""
    root = etree.fromstring(document)
    schema = votable_schema()
    assert schema.validate(root), schema.error_log
    problems = votlint(document)
    assert problems == [], "\n".join(problems)
    return root
