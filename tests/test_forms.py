"""HTML forms generated from activity descriptions: inputs, escaping, posting them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from lxml import html

from conftest import ROOT, UWS_NS, Server
from opus.activities.model import (
    ActivityDescription,
    EntityDescription,
    Option,
    ParameterDescription,
)
from opus.activities.votable import write_activity
from opus.web.forms import form_parameters, render_form
from test_datalink import EVERY_KIND

XSS = '<script>alert("x")</script>'


def inputs(page: str) -> dict[str, html.HtmlElement]:
    document = html.fromstring(page)
    return {element.get("name"): element for element in document.xpath("//input|//select")
            if element.get("name")}


def test_input_type_per_datatype() -> None:
    url_param = ParameterDescription("source", "char", arraysize="*", xtype="url",
                                     default="http://example.org/a.fits")
    activity = replace(EVERY_KIND, parameters=(*EVERY_KIND.parameters, url_param))
    fields = inputs(render_form(activity, "/post/here"))

    count = fields["count"]
    assert (count.get("type"), count.get("step"), count.get("min"), count.get("max"),
            count.get("value")) == ("number", "1", "1", "10", "3")
    ratio = fields["ratio"]
    assert (ratio.get("type"), ratio.get("step"), ratio.get("min"), ratio.get("value")) == \
        ("number", "any", "0", "0.5")
    assert ratio.get("max") is None  # exclusive bound: not expressible, stated in the help
    assert fields["mode"].tag == "select"
    assert [(o.get("value"), o.text, o.get("selected") is not None)
            for o in fields["mode"].iterfind("option")] == \
        [("fast", "Fast mode", True), ("slow", "slow", False)]
    assert (fields["flag"].get("type"), fields["flag"].get("value"),
            fields["flag"].get("checked")) == ("checkbox", "true", None)
    assert fields["band"].get("type") == "text"  # an array of two doubles
    assert fields["infile"].get("type") == "file"
    assert fields["source"].get("type") == "url"
    assert fields["source"].get("value") == "http://example.org/a.fits"
    assert fields["label"].get("type") == "text"

    # required parameters are marked, the optional ones folded away
    assert fields["label"].get("required") is not None
    assert fields["count"].get("required") is None
    document = html.fromstring(render_form(activity, "/post/here"))
    folded = {e.get("name") for e in document.xpath("//details//input|//details//select")}
    assert folded == {"count", "ratio", "mode", "flag", "source"}
    # units and help texts
    assert "deg" in document.xpath("//input[@name='ratio']/following-sibling::span"
                                   "[@class='unit']")[0].text
    assert document.xpath("//*[@id='p-count-help']")[0].text == "How many (≥ 1, ≤ 10)"
    assert "not accepted yet" in document.xpath("//*[@id='p-infile-help']")[0].text
    # the form itself, with the control fields
    (form,) = document.xpath("//form")
    assert (form.get("method"), form.get("action"), form.get("enctype")) == \
        ("post", "/post/here", "multipart/form-data")
    assert fields["RUNID"].get("type") == "text"
    assert fields["EXECUTIONDURATION"].get("type") == "number"
    assert fields["EXECUTIONDURATION"].get("placeholder") == "30"
    assert (fields["PHASE"].get("type"), fields["PHASE"].get("value"),
            fields["PHASE"].get("checked")) == ("checkbox", "RUN", "checked")


def test_rerendered_form_keeps_the_users_values() -> None:
    page = render_form(EVERY_KIND, "/x", values={"COUNT": "12", "mode": "slow",
                                                "RUNID": "mine", "label": "<b>"},
                       error="count: must be at most 10 (got 12)", invalid="count")
    document = html.fromstring(page)
    assert document.xpath("//*[@role='alert']")[0].text == "count: must be at most 10 (got 12)"
    fields = inputs(page)
    assert fields["count"].get("value") == "12"
    assert fields["count"].get("aria-invalid") == "true"
    assert fields["label"].get("value") == "<b>"  # escaped in the markup, intact as a value
    assert '<b>' not in page.split("<body>")[1]
    assert fields["RUNID"].get("value") == "mine"
    assert [o.get("value") for o in fields["mode"].iterfind("option") if o.get("selected")] \
        == ["slow"]
    assert fields["PHASE"].get("checked") is None  # "run now" was not sent


def test_form_parameters_fill_booleans_and_drop_empty_controls() -> None:
    items = [("label", "a"), ("RUNID", ""), ("EXECUTIONDURATION", " "), ("PHASE", "RUN")]
    assert form_parameters(EVERY_KIND, items) == [("label", "a"), ("PHASE", "RUN"),
                                                  ("flag", "false")]
    assert ("flag", "false") not in form_parameters(EVERY_KIND, [("FLAG", "true")])


def test_form_parameters_of_inputs_prefer_the_uploaded_file() -> None:
    copy = ActivityDescription(name="copy", used=(EntityDescription("input"),))
    assert form_parameters(copy, [("input", "")], files=["input"]) == []
    assert form_parameters(copy, [("input", "http://x/y")], files=["input"]) == []
    assert form_parameters(copy, [("input", "http://x/y")]) == [("input", "http://x/y")]
    assert form_parameters(copy, [("input", " ")]) == []


def test_form_page_is_served(server: Server) -> None:
    response = server.session.get(f"{server.url}/activities/sleep/form")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    document = html.fromstring(response.content)
    assert document.xpath("//form/@action") == [f"{server.url}/activities/sleep/form"]
    duration = inputs(response.text)["duration"]
    assert (duration.get("type"), duration.get("min"), duration.get("max"),
            duration.get("value")) == ("number", "0", "3600", "1")


def test_posting_the_form_creates_and_runs_the_job(server: Server) -> None:
    response = server.session.post(
        f"{server.url}/activities/echo/form", allow_redirects=False,
        data={"text": "from the form", "RUNID": "web", "EXECUTIONDURATION": "",
              "PHASE": "RUN"})
    assert response.status_code == 303, response.text
    job_url = response.headers["Location"]
    assert job_url.startswith(f"{server.rest('echo')}/")
    document = server.wait_final(job_url)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED"
    assert document.findtext("uws:runId", namespaces=UWS_NS) == "web"
    assert server.session.get(f"{job_url}/results/output").content == b"from the form\n"


def test_form_without_run_now_leaves_the_job_pending(server: Server) -> None:
    response = server.session.post(f"{server.url}/activities/sleep/form",
                                   data={"duration": "", "RUNID": ""}, allow_redirects=False)
    assert response.status_code == 303, response.text
    job_url = response.headers["Location"]
    assert server.phase(job_url) == "PENDING"
    assert server.session.get(f"{job_url}/parameters/duration").text == "1"  # the default


@pytest.mark.parametrize("data, message", [
    ({"duration": "7200", "RUNID": "kept", "PHASE": "RUN"},
     "duration: must be at most 3600 (got 7200)"),
    ({"duration": "soon"}, "duration: must be a finite number"),
    ({"duration": "1", "EXECUTIONDURATION": "-5"}, "EXECUTIONDURATION"),
    ({"duration": "1", "colour": "red"}, "colour: unknown parameter"),
])
def test_bad_value_rerenders_the_form_with_the_error(server: Server, data: dict[str, str],
                                                     message: str) -> None:
    before = server.session.get(server.rest("sleep")).content.count(b"<uws:jobref")
    response = server.session.post(f"{server.url}/activities/sleep/form", data=data,
                                   allow_redirects=False)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    document = html.fromstring(response.content)
    assert message in document.xpath("//*[@role='alert']")[0].text
    fields = inputs(response.text)
    assert fields["duration"].get("value") == data["duration"]
    if "RUNID" in data:
        assert fields["RUNID"].get("value") == "kept"
        assert fields["PHASE"].get("checked") is not None
        assert fields["duration"].get("aria-invalid") == "true"
    assert server.session.get(server.rest("sleep")).content.count(b"<uws:jobref") == before


def test_missing_required_value_names_the_parameter(server: Server) -> None:
    response = server.session.post(f"{server.url}/activities/echo/form",
                                   data={"text": "", "PHASE": "RUN"})
    assert response.status_code == 400
    assert "text: required" in response.text


def test_description_text_is_escaped(server_factory, tmp_path: Path) -> None:
    activities = tmp_path / "activities"
    activities.mkdir()
    evil = ActivityDescription(
        name="evil", description=f"Evil {XSS} activity",
        command=(str(ROOT / "scripts" / "echo.sh"),),
        version='1" onmouseover="alert(1)',
        parameters=(
            ParameterDescription("text", "char", arraysize="*", default=f'"><{XSS}',
                                 description=f"help {XSS}", unit=XSS),
            ParameterDescription("choice", "char", arraysize="*", default="a",
                                 options=(Option("a", XSS),)),
        ),
        generated=(EntityDescription("output", content_type="text/plain",
                                     default_filename="output.txt", description=XSS),))
    (activities / "evil.xml").write_bytes(write_activity(evil))
    server = server_factory(activities_dir=activities)

    form = server.session.get(f"{server.url}/activities/evil/form")
    listing = server.session.get(f"{server.url}/activities",
                                 headers={"Accept": "text/html"})
    for response in (form, listing):
        assert response.status_code == 200
        assert "<script" not in response.text.lower()
        assert "onmouseover=" not in response.text.replace("onmouseover=&quot;", "")
        assert "&lt;script&gt;" in response.text
    document = html.fromstring(form.content)
    assert document.xpath("//script") == []
    assert document.xpath("//*[@onmouseover]") == []
    assert inputs(form.text)["text"].get("value") == f'"><{XSS}'  # the default, intact
    assert XSS in document.xpath("//*[@id='p-text-help']")[0].text_content()

    # the escaped default goes back through the form unharmed
    response = server.session.post(f"{server.url}/activities/evil/form",
                                   data={"text": f'"><{XSS}', "choice": "a", "PHASE": "RUN"},
                                   allow_redirects=False)
    assert response.status_code == 303, response.text
    document = server.wait_final(response.headers["Location"])
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED"
    output = server.session.get(f"{response.headers['Location']}/results/output")
    assert output.text == f'"><{XSS}\n'


def test_a_file_for_a_parameter_that_is_no_input_is_refused(server: Server) -> None:
    response = server.session.post(f"{server.url}/activities/echo/form",
                                   data={"text": "x"}, files={"text": ("a.txt", b"bytes")})
    assert response.status_code == 400
    assert "text: is not a file input of echo" in response.text


def test_the_form_uploads_an_input_file(server_factory, activities_dir) -> None:
    srv = server_factory(activities_dir=activities_dir)
    page = srv.session.get(f"{srv.url}/activities/copy/form").text
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page
    response = srv.session.post(f"{srv.url}/activities/copy/form",
                                data={"input": "", "suffix": "!", "PHASE": "RUN"},
                                files={"input": ("mine.txt", b"uploaded\n")},
                                allow_redirects=False)
    assert response.status_code == 303, response.text
    srv.wait_final(response.headers["Location"])
    output = srv.session.get(f"{response.headers['Location']}/results/output")
    assert output.text == "uploaded\n!\n"


def test_multipart_form_with_an_empty_file_part(server: Server) -> None:
    """What a browser sends for a form with a file input and no file chosen."""
    response = server.session.post(f"{server.url}/activities/echo/form",
                                   data={"text": "héllo wörld"}, files={"RUNID": ("", b"")},
                                   allow_redirects=False)
    assert response.status_code == 303, response.text
    job_url = response.headers["Location"]
    assert server.session.get(f"{job_url}/parameters/text").text == "héllo wörld"
