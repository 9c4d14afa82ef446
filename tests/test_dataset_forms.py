"""Forms and service descriptors opened for a dataset (issue 14, item 3).

An ObsCore table of the demo DL3 data (scripts/make_demo_dl3.py: one row per observation,
its access_url the observation's events file) is served by a tiny TAP stand-in (a local
HTTP server answering TAP 1.1 sync queries on ``obs_publisher_did``, no network), which
the server resolves identifiers through (setting ``obscore_tap_url``). The gammapy_maps
description maps its parameters to ObsCore fields by utype; the form opened for a row is
prefilled with them, and run in Chromium to COMPLETED.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from lxml import html

from conftest import ROOT, Server, start_server
from opus.activities.votable import ActivityDescriptionError, parse_activity
from vochecks import assert_valid_votable

try:
    import gammapy  # noqa: F401
except ImportError:
    if os.environ.get("OPUS_REQUIRE_GAMMAPY") == "1":
        raise
    pytest.skip("gammapy is not installed (the opus[gammapy] extra)", allow_module_level=True)

from astropy import units as u  # noqa: E402  (with gammapy)
from astropy.io.votable import from_table  # noqa: E402
from astropy.table import Table  # noqa: E402
from astropy.time import Time  # noqa: E402

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
DID = "ivo://opus.test/cta-demo?obs={}"
#: The energy range of the demo IRFs (scripts/make_demo_dl3.py), TeV.
ENERGIES = (0.03, 300.0)


def obscore_table(store: Path) -> Table:
    """ObsCore 1.1 rows (table 6 names, units, utypes) of the demo observations."""
    index = Table.read(store / "obs-index.fits.gz")
    reference = Time(index.meta["MJDREFI"] + index.meta["MJDREFF"], format="mjd",
                     scale=index.meta["TIMESYS"].lower())
    low, high = (e * u.TeV for e in ENERGIES)
    rows = []
    for row in index:
        obs_id = int(row["OBS_ID"])
        rows.append({
            "dataproduct_type": "event", "calib_level": 2, "obs_collection": "OPUS demo DL3",
            "obs_id": str(obs_id), "obs_publisher_did": DID.format(obs_id),
            "access_url": (store / f"obs_{obs_id}.fits.gz").as_uri(),
            "access_format": "application/fits", "target_name": str(row["OBJECT"]),
            "s_ra": float(row["RA_PNT"]), "s_dec": float(row["DEC_PNT"]), "s_fov": 5.0,
            "t_min": (reference + row["TSTART"] * u.s).mjd,
            "t_max": (reference + row["TSTOP"] * u.s).mjd,
            "t_exptime": float(row["LIVETIME"]),
            "em_min": high.to_value(u.m, equivalencies=u.spectral()),
            "em_max": low.to_value(u.m, equivalencies=u.spectral()),
            "facility_name": "CTA", "instrument_name": "demo"})
    table = Table(rows=rows)
    for name, unit in {"s_ra": "deg", "s_dec": "deg", "s_fov": "deg", "t_min": "d",
                       "t_max": "d", "t_exptime": "s", "em_min": "m", "em_max": "m"}.items():
        table[name].unit = unit
    return table


def votable_bytes(table: Table) -> bytes:
    document = from_table(table)
    out = io.BytesIO()
    document.to_xml(out)
    return out.getvalue()


class TapStandIn:
    """A TAP 1.1 sync endpoint of one ObsCore table that answers ``WHERE
    obs_publisher_did = '...'`` (the only query the server makes), and remembers the
    queries; the identifiers ``.../broken``, ``.../refused`` and ``.../huge`` make it fail
    as a server does (HTTP 500), answer a TAP error document, or send 5 MB."""

    def __init__(self, table: Table) -> None:
        self.table, self.queries = table, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = parse_qs(body.decode())["QUERY"][0]
                outer.queries.append(query)
                found = re.fullmatch(r"SELECT \* FROM ivoa\.obscore WHERE "
                                     r"obs_publisher_did = '((?:[^']|'')*)'", query)
                did = found.group(1).replace("''", "'") if found else None
                if did is None or did.endswith("/broken"):
                    self.send_response(500)
                    self.end_headers()
                    return
                rows = outer.table[outer.table["obs_publisher_did"] == did]
                data = votable_bytes(rows)
                if did.endswith("/refused"):  # DALI 1.1 section 4.4: an error document
                    data = (b'<?xml version="1.0"?><VOTABLE version="1.4" xmlns='
                            b'"http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE type="results">'
                            b'<INFO name="QUERY_STATUS" value="ERROR">table not found</INFO>'
                            b'</RESOURCE></VOTABLE>')
                elif did.endswith("/huge"):
                    data = data.replace(b"</VOTABLE>", b" " * 5_000_000 + b"</VOTABLE>")
                self.send_response(200)
                self.send_header("Content-Type", "application/x-votable+xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tap"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data-root") / "dl3"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_dl3.py"), str(directory),
                    "--seed", "0"], check=True, capture_output=True, timeout=180)
    return directory


@pytest.fixture(scope="module")
def obscore(demo_store: Path) -> Table:
    return obscore_table(demo_store)


@pytest.fixture(scope="module")
def tap(obscore: Table) -> Iterator[TapStandIn]:
    stand_in = TapStandIn(obscore)
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, demo_store: Path,
            tap: TapStandIn) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("gateway"), "",
                          data_roots=json.dumps([str(demo_store.parent)]),
                          obscore_tap_url=tap.url)
    yield server
    server.stop()


def form_values(page: bytes) -> dict[str, str]:
    tree = html.fromstring(page)
    values = {field.get("name"): field.get("value") or ""
              for field in tree.xpath("//form//input[@name][not(@type='hidden')]")
              if field.get("type") not in ("checkbox", "file")}
    values.update({select.get("name"): select.value for select in tree.xpath("//form//select")})
    return values


def expected(row: Any) -> dict[str, str]:
    """What the gammapy_maps form must hold for ``row``: its mapping, converted."""
    return {"datastore": row["access_url"][len("file://"):], "obs_ids": row["obs_id"],
            "ra": row["s_ra"], "dec": row["s_dec"], "tmin": row["t_min"],
            "tmax": row["t_max"], "emin": ENERGIES[0], "emax": ENERGIES[1]}


def assert_prefilled(values: dict[str, str], row: Any) -> None:
    for name, want in expected(row).items():
        if isinstance(want, str):
            assert values[name] == want, name
        else:
            assert float(values[name]) == pytest.approx(float(want), rel=1e-9), name


def test_a_form_opened_for_an_identifier_is_prefilled_from_the_obscore_row(
        gateway: Server, obscore: Table, tap: TapStandIn) -> None:
    row = obscore[1]
    page = requests.get(f"{gateway.url}/ui/activities/gammapy_maps",
                        params={"obs_publisher_did": row["obs_publisher_did"]})
    assert page.status_code == 200, page.text
    values = form_values(page.content)
    assert_prefilled(values, row)
    assert values["width"] == "3" and values["projection"] == "CAR"  # not mapped: defaults
    assert tap.queries[-1] == (f"SELECT * FROM ivoa.obscore WHERE obs_publisher_did = "
                               f"'{row['obs_publisher_did']}'")
    aside = html.fromstring(page.content).get_element_by_id("dataset")
    shown = {tr.get("data-field"): tr.text_content() for tr in aside.xpath(".//tr[@data-field]")}
    assert row["access_url"] in shown["access_url"]
    assert "OPUS demo source" in shown["target_name"] and "deg" in shown["s_ra"]


def test_a_form_opened_with_the_obscore_fields_a_datalink_client_passes(
        gateway: Server, obscore: Table) -> None:
    row = obscore[0]
    fields = {name: str(row[name]) for name in ("access_url", "obs_id", "s_ra", "s_dec",
                                                 "t_min", "t_max", "em_min", "em_max")}
    page = requests.get(f"{gateway.url}/ui/activities/gammapy_maps", params=fields)
    assert page.status_code == 200, page.text
    assert_prefilled(form_values(page.content), row)
    plain = requests.get(f"{gateway.url}/activities/gammapy_maps/form", params=fields)
    assert plain.status_code == 200, plain.text  # the service's own form, too
    assert_prefilled(form_values(plain.content), row)
    assert row["access_url"] in html.fromstring(plain.content).get_element_by_id(
        "dataset").text_content()


def test_a_value_that_converts_to_no_number_is_left_to_the_user() -> None:
    from opus.activities.obscore import DatasetValue, prefill
    from opus.activities.registry import ActivityRegistry

    maps = ActivityRegistry.load(ROOT / "activity_descriptions").get("gammapy_maps")
    values, problems = prefill(maps, {"em_min": DatasetValue("0", "m"),
                                      "em_max": DatasetValue("4.1e-17", "m"),
                                      "s_dec": DatasetValue("22", "furlong")})
    assert "emax" not in values and "em_min='0'" in problems["emax"]
    assert float(values["emin"]) == pytest.approx(0.0302, rel=1e-2)
    assert "dec" in problems and "dec" not in values
    values, problems = prefill(maps, {"access_url": DatasetValue("https://archive/obs.fits")})
    assert "datastore" not in values and "not a file of this server" in problems["datastore"]


def test_the_service_descriptor_opened_for_a_dataset_creates_that_job(
        gateway: Server, obscore: Table) -> None:
    import pyvo.dal.adhoc
    from astropy.io.votable import parse

    row = obscore[2]
    answer = requests.get(f"{gateway.url}/activities/gammapy_maps/datalink",
                          params={"ID": row["obs_publisher_did"]})  # as DataLink names it
    assert answer.status_code == 200, answer.text
    params = {p.get("name"): p.get("value") for p in assert_valid_votable(
        answer.content).iter(f"{{{VOTABLE_NS}}}PARAM")}
    assert_prefilled(params, row)
    resource = next(r for r in parse(io.BytesIO(answer.content)).resources
                    if r.utype == "adhoc:service")
    query = pyvo.dal.adhoc.DatalinkQuery.from_resource([], resource)
    job_url = query.submit(post=True).url
    job = requests.get(f"{job_url}/parameters", headers={"Accept": "application/json"})
    assert job.status_code == 200, job.text
    stored = {entry["id"]: str(entry["value"]) for entry in job.json()["parameters"]}
    assert_prefilled(stored, row)
    assert requests.get(job_url, headers={"Accept": "application/json"}).json()["phase"] \
        == "PENDING"  # the descriptor's PHASE is empty: the client did not ask to run it


def test_datasets_that_cannot_be_had_are_client_or_server_errors(
        gateway: Server, tap: TapStandIn) -> None:
    form = f"{gateway.url}/ui/activities/gammapy_maps"
    missing = requests.get(form, params={"obs_publisher_did": DID.format(9999)})
    assert missing.status_code == 404 and "obs_publisher_did" in missing.text
    # An identifier with a quote stays one ADQL string literal (ADQL 2.0 section 2.1.3).
    hostile = "x' OR '1'='1"
    answer = requests.get(form, params={"obs_publisher_did": hostile})
    assert answer.status_code == 404
    assert tap.queries[-1].endswith("obs_publisher_did = 'x'' OR ''1''=''1'")
    broken = requests.get(form, params={"obs_publisher_did": "ivo://opus.test/broken"})
    assert broken.status_code == 503 and broken.headers["Retry-After"]
    refused = requests.get(form, params={"obs_publisher_did": "ivo://opus.test/refused"})
    assert refused.status_code == 503 and "table not found" in refused.text
    huge = requests.get(form, params={"obs_publisher_did": "ivo://opus.test/huge"})
    assert huge.status_code == 503 and "more than" in huge.text
    bad = requests.get(form, params={"access_url": "file:///x", "s_ra": "north"})
    assert bad.status_code == 200  # shown, not filled: the field says why
    assert "s_ra=&#39;north&#39;" in bad.text or "s_ra='north'" in html.fromstring(
        bad.content).text_content()
    echo = requests.get(f"{gateway.url}/ui/activities/echo", params={"s_ra": "1"})
    assert echo.status_code == 200 and "maps none of these fields" in echo.text
    twice = requests.get(form, params=[("s_ra", "1"), ("s_ra", "2")])
    assert twice.status_code == 400 and "s_ra" in twice.text
    control = requests.get(form, params={"obs_publisher_did": "a\x01b"})
    assert control.status_code == 400 and "obs_publisher_did" in control.text


def test_without_a_tap_service_an_identifier_alone_is_a_400(tmp_path: Path) -> None:
    server = start_server(tmp_path / "no-tap", "", scheduler=False)
    try:
        answer = requests.get(f"{server.url}/ui/activities/gammapy_maps",
                              params={"obs_publisher_did": DID.format(1001)})
        assert answer.status_code == 400
        assert "obs_publisher_did" in answer.text and "obscore_tap_url" in answer.text
    finally:
        server.stop()


def test_an_obscore_utype_that_names_no_field_is_an_error_of_the_description() -> None:
    text = (ROOT / "activity_descriptions" / "gammapy_maps.xml").read_text()
    broken = text.replace('utype="obscore:Access.Reference"', 'utype="obscore:Access.Referense"')
    with pytest.raises(ActivityDescriptionError, match="Access.Referense"):
        parse_activity(broken.encode())


# -- in the browser: open the form from an ObsCore row, submit it, the job completes ------
from test_web_client import browser, page, shots  # noqa: E402,F401  (Chromium)


def test_the_gammapy_maps_form_opened_from_an_obscore_row_runs(
        gateway: Server, obscore: Table, page: Any, shots: Any) -> None:
    from test_web_client import JOB_PAGE

    row = obscore[0]
    page.set_viewport_size({"width": 1300, "height": 900})  # the form and the dataset
    page.goto(f"{gateway.url}/ui/activities/gammapy_maps?"
              f"obs_publisher_did={row['obs_publisher_did']}")
    assert page.input_value("#p-datastore") == row["access_url"][len("file://"):]
    assert float(page.input_value("#p-ra")) == pytest.approx(float(row["s_ra"]))
    assert page.input_value("#p-obs_ids") == row["obs_id"]
    assert page.is_visible("#dataset") and row["obs_publisher_did"] in \
        page.inner_text("#dataset")
    shots("form-from-dataset")
    page.fill("#c-runid", "from ObsCore")
    page.click("button:has-text('Create job')")
    page.wait_for_url(JOB_PAGE)
    started = time.monotonic()
    page.wait_for_selector("#job:is([data-phase=COMPLETED], [data-phase=ERROR])",
                           timeout=300_000)
    print(f"gammapy_maps job from an ObsCore row followed for "
          f"{time.monotonic() - started:.1f} s")
    page.wait_for_function("() => { const i = document.querySelector('#result-preview img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    page.locator("#result-preview img").scroll_into_view_if_needed()
    shots("job-from-dataset")
    assert page.get_attribute("#job", "data-phase") == "COMPLETED", page.inner_text("main")
    summary = json.loads(requests.get(
        f"{gateway.url}/rest/gammapy_maps/{JOB_PAGE.search(page.url).group(1)}"
        "/results/summary").text)
    assert summary["obs_ids"] == [int(row["obs_id"])]
