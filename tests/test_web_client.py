"""The web client (opus/web/pages.py, job_pages.py, sessions.py), in a real browser.

Chromium from Debian (``apt-get install chromium``) driven by Playwright (``pip install
playwright``; ``playwright install`` is not needed: the browser is launched from
``/usr/bin/chromium``). The browser tests are skipped when either is missing, and fail
instead when ``OPUS_REQUIRE_BROWSER=1`` (CI). Each keeps a screenshot of every step in
its temporary directory (``.../screenshots/NN-step.png``). The HTTP rules of the pages
(cookie, CSRF, negotiation) are checked with plain requests, without a browser.

With ``OPUS_WEB_DOCS=DIR`` the gammapy test also writes the README's screenshots to DIR
(``scripts/make_web_screenshots.py`` does this for ``docs/``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import html

from conftest import ROOT, Server, start_server
from test_users import opus_users

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JOB_PAGE = re.compile(r"/ui/jobs/([0-9a-f]{32})$")


def browser_problem() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = browser_problem()
    if problem:
        if os.environ.get("OPUS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"OPUS_REQUIRE_BROWSER=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server-path root of the module's server (setting ``data_roots``): the demo
    data store of the gammapy_maps page is made in it."""
    return tmp_path_factory.mktemp("data-root")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[Server]:
    """One server for this module (SQLite: the stores are tested on both backends
    elsewhere; these tests are about the pages)."""
    server = start_server(tmp_path_factory.mktemp("web"), "",
                          data_roots=json.dumps([str(data_root)]))
    yield server
    server.stop()


class Shots:
    """Numbered full-page screenshots of one test."""

    def __init__(self, page: Any, directory: Path) -> None:
        self.page, self.directory, self.count = page, directory, 0
        directory.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str, page: Any = None) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{step}.png"
        (page or self.page).screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; script errors fail the test."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], errors


@pytest.fixture
def shots(page: Any, tmp_path: Path) -> Shots:
    shots = Shots(page, tmp_path / "screenshots")
    print(f"screenshots in {shots.directory}")
    return shots


def user(server: Server, name: str) -> str:
    """A new user of ``server``; its token."""
    done = opus_users(server, "add", f"{name}-{server.url.rsplit(':', 1)[1]}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_for_graph(page: Any) -> Any:
    """The frame of the provenance SVG, once its links are there."""
    page.wait_for_function("() => { const o = document.getElementById('graph');"
                           " return o && o.contentDocument &&"
                           " o.contentDocument.querySelector('svg g.node a'); }")
    return next(frame for frame in page.frames if "/provsap?" in frame.url)


def job_id_of(page: Any) -> str:
    match = JOB_PAGE.search(page.url)
    assert match, page.url
    return match.group(1)


# -- in the browser ------------------------------------------------------------------------
def test_a_job_from_the_home_page_to_its_result_and_provenance(web: Server, page: Any,
                                                               shots: Shots) -> None:
    page.goto(f"{web.url}/")
    assert page.url == f"{web.url}/ui/"  # a browser asking for / gets the web client
    assert page.inner_text("h1") == "OPUS job server"
    for path in ("/openapi.json", "/capabilities", "/availability", "/activities/echo/datalink"):
        assert page.locator(f'a[href="{web.url}{path}"]').count() >= 1, path
    assert "/datalink/links?ID=" in page.inner_text("main")
    assert "Not signed in" in page.inner_text("header")
    shots("home")

    page.click("text=New echo job")
    assert page.url == f"{web.url}/ui/activities/echo"
    assert "Writes the given text to a file" in page.inner_text("main")
    page.fill("#p-text", "hello from Chromium")
    assert page.is_checked("input[name=PHASE]")  # "run now"
    shots("echo-form")
    page.click("button:has-text('Create job')")
    page.wait_for_url(JOB_PAGE)
    job_id = job_id_of(page)
    first_phase = page.get_attribute("#job", "data-phase")
    page.evaluate("window.opusMarker = 'the same page'")
    page.wait_for_selector('#job[data-phase="COMPLETED"]', timeout=60_000)
    assert page.evaluate("window.opusMarker") == "the same page"  # followed, not reloaded
    print(f"job page first showed {first_phase}, then COMPLETED in place")
    assert page.inner_text("#phase") == "COMPLETED"
    assert page.inner_text("#result-output pre") == "hello from Chromium\n"
    assert "text/plain" in page.inner_text("#result-output .meta")
    assert page.locator("#logs-title").count() == 1
    shots("echo-completed")

    page.click("#result-output >> text=Open")
    page.wait_for_url(f"**/rest/echo/{job_id}/results/output")
    assert page.inner_text("body").strip() == "hello from Chromium"
    shots("result")
    page.go_back()

    page.click("a.button:has-text('Provenance')")
    page.wait_for_url(re.compile(r"/ui/provenance\?ID="))
    graph = wait_for_graph(page)
    assert page.locator("ul.downloads a").count() == 6
    shots("provenance")
    graph.locator("g.node", has_text="output").locator("a").click()
    page.wait_for_url(re.compile(r"/ui/provenance\?ID=opus%3Aent-[0-9a-f]{32}$"))
    graph = wait_for_graph(page)
    assert page.input_value("#g-direction") == "BACK"  # an entity: where it came from
    shots("entity-provenance")
    graph.locator("g.node", has_text="echo").locator("a").click()
    page.wait_for_url(f"{web.url}/ui/jobs/{job_id}")  # the run's node opens its job
    shots("back-to-the-job")


def test_an_invalid_value_is_shown_beside_its_field(web: Server, page: Any,
                                                    shots: Shots) -> None:
    page.goto(f"{web.url}/ui/activities/sleep")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    unlabelled = page.evaluate(
        "() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
        ".filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))"
        ".map(e => e.name)")
    assert unlabelled == []
    assert not page.is_visible("#p-duration")  # an optional parameter, folded away
    page.click("summary:has-text('Optional parameters')")
    page.fill("#p-duration", "7200")
    page.fill("#c-runid", "too long")
    # The browser refuses 7200 itself (max="3600"); switch its check off to see the
    # server's answer, as a browser without form validation would.
    assert page.evaluate("document.getElementById('p-duration').validity.rangeOverflow")
    page.evaluate("document.querySelector('main form').noValidate = true")
    page.click("button:has-text('Create job')")
    message = "duration: must be at most 3600 (got 7200)"
    assert page.inner_text("#p-duration-error") == message
    assert message in page.inner_text("[role=alert]")
    assert page.input_value("#p-duration") == "7200"  # the values are kept
    assert page.input_value("#c-runid") == "too long"
    assert page.is_checked("input[name=PHASE]")
    assert page.get_attribute("#p-duration", "aria-invalid") == "true"
    assert "p-duration-error" in page.get_attribute("#p-duration", "aria-describedby")
    assert page.get_attribute("[role=alert] a", "href") == "#p-duration"
    shots("invalid-value")

    page.fill("#p-duration", "0")  # corrected, and sent from the keyboard
    page.focus("#p-duration")
    page.keyboard.press("Enter")
    page.wait_for_url(JOB_PAGE)
    assert "too long" in page.inner_text("h1")
    page.wait_for_selector('#job[data-phase="COMPLETED"]', timeout=60_000)
    shots("corrected-and-done")


def test_signed_in_users_see_only_their_jobs(web: Server, page: Any, shots: Shots) -> None:
    alice, bob = user(web, "alice"), user(web, "bob")
    bobs = requests.post(web.rest("echo"), data={"text": "bob's", "PHASE": "RUN"},
                         headers={"Authorization": f"Bearer {bob}"}, allow_redirects=False)
    anonymous = requests.post(web.rest("echo"), data={"text": "anyone's"},
                              allow_redirects=False)
    bob_job = bobs.headers["Location"].rsplit("/", 1)[1]
    anonymous_job = anonymous.headers["Location"].rsplit("/", 1)[1]

    page.goto(f"{web.url}/ui/jobs")
    listed = page.inner_text("main")
    assert anonymous_job[:12] in listed and bob_job[:12] not in listed
    page.click("header >> a:has-text('Sign in')")
    page.fill("#token", "not-a-token")
    page.click("button:has-text('Sign in')")
    assert "token is not valid" in page.inner_text("#token-error")
    assert page.get_attribute("#token", "aria-invalid") == "true"
    shots("wrong-token")
    page.fill("#token", alice)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{web.url}/ui/jobs")  # back where the sign-in started
    assert re.search(r"Signed in as alice-\d+", page.inner_text("header"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "opus_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    assert page.evaluate("document.cookie") == ""  # no script reads it
    assert "No job yet" in page.inner_text("main")
    shots("signed-in-no-jobs")

    page.goto(f"{web.url}/ui/activities/echo")
    page.fill("#p-text", "alice's")
    page.click("button:has-text('Create job')")
    page.wait_for_url(JOB_PAGE)
    alice_job = job_id_of(page)
    assert re.search(r"Owner\s+alice-\d+", page.inner_text("dl.facts"))
    page.wait_for_selector('#job[data-phase="COMPLETED"]', timeout=60_000)
    page.click("header >> text=My jobs")
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() == 1 and alice_job[:12] in rows.inner_text()
    listed = page.inner_text("main")
    assert bob_job[:12] not in listed and anonymous_job[:12] not in listed
    shots("my-jobs")

    page.click("header >> button:has-text('Sign out')")
    page.wait_for_url(f"{web.url}/ui/")
    assert "Not signed in" in page.inner_text("header")
    assert not [c for c in page.context.cookies() if c["name"] == "opus_session"]
    shots("signed-out")
    page.goto(f"{web.url}/ui/jobs/{alice_job}")
    assert "belongs to another user" in page.inner_text("[role=alert]")
    shots("not-yours")


def test_the_buttons_of_a_job_page(web: Server, page: Any, shots: Shots) -> None:
    page.goto(f"{web.url}/ui/activities/sleep")
    page.click("summary:has-text('Optional parameters')")
    page.fill("#p-duration", "30")
    page.uncheck("input[name=PHASE]")
    page.click("button:has-text('Create job')")
    page.wait_for_url(JOB_PAGE)
    job_id = job_id_of(page)
    assert page.get_attribute("#job", "data-phase") == "PENDING"
    shots("pending")

    # Run from elsewhere (another client of the anonymous space): the page follows.
    page.evaluate("window.opusMarker = 'the same page'")
    ran = requests.post(f"{web.rest('sleep')}/{job_id}/phase", data={"PHASE": "RUN"},
                        allow_redirects=False)
    assert ran.status_code == 303
    page.wait_for_selector('#job[data-phase="EXECUTING"]', timeout=60_000)
    elapsed = page.inner_text(".elapsed")
    page.wait_for_function("before => document.querySelector('.elapsed').textContent"
                           " !== before", arg=elapsed)  # the elapsed time ticks
    assert page.evaluate("window.opusMarker") == "the same page"
    shots("executing")

    page.click("button:has-text('Abort')")
    page.wait_for_selector('#job[data-phase="ABORTED"]')
    assert "aborted at the client's request" in page.inner_text("[role=alert]")
    shots("aborted")

    page.fill("#destruction", "2001-01-01T00:00")
    page.click("form.destruction button")
    assert "DESTRUCTION: must be in the future" in page.inner_text("#destruction-error")
    assert page.input_value("#destruction") == "2001-01-01T00:00"
    shots("destruction-refused")
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).replace(second=0)
    page.fill("#destruction", later.strftime("%Y-%m-%dT%H:%M"))
    page.click("form.destruction button")
    page.wait_for_url(f"{web.url}/ui/jobs/{job_id}")
    assert later.strftime("%Y-%m-%d %H:%M") in page.inner_text("dl.facts")

    page.click("text=Run again")
    assert page.url == f"{web.url}/ui/activities/sleep?from={job_id}"
    assert page.is_visible("#p-duration")  # not the default: shown unfolded
    assert page.input_value("#p-duration") == "30"  # the same parameters, ready to run
    assert page.is_checked("input[name=PHASE]")
    shots("run-again-form")

    page.go_back()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Delete')")
    page.wait_for_url(f"{web.url}/ui/jobs")
    assert job_id[:12] not in page.inner_text("main")
    shots("deleted")


def test_pages_fit_a_phone(web: Server, browser: Any, tmp_path: Path) -> None:
    created = requests.post(web.rest("echo"), data={"text": "on a phone " * 30,
                                                    "PHASE": "RUN"}, allow_redirects=False)
    job_url = created.headers["Location"]
    web.wait_final(job_url)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    shots = Shots(phone, tmp_path / "screenshots")
    try:
        for step, path in (("home", "/ui/"), ("job", f"/ui/jobs/{job_url.rsplit('/', 1)[1]}"),
                           ("jobs", "/ui/jobs"), ("form", "/ui/activities/gammapy_maps")):
            phone.goto(f"{web.url}{path}")
            wide = phone.evaluate("document.documentElement.scrollWidth")
            assert wide <= 390, (step, wide)  # nothing sticks out sideways
            shots(f"phone-{step}")
    finally:
        context.close()


# -- HTTP rules, without a browser ---------------------------------------------------------
def csrf_of(response: requests.Response) -> str:
    values = html.fromstring(response.content).xpath("//input[@name='csrf_token']/@value")
    assert values, "no CSRF field on the page"
    return str(values[0])


def signed_in(server: Server, token: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{server.url}/ui/signin", data={"token": token},
                          allow_redirects=False)
    assert answer.status_code == 303, answer.text
    return session


def test_browsers_get_pages_and_programs_keep_uws(web: Server) -> None:
    home = requests.get(f"{web.url}/", headers={"Accept": BROWSER_ACCEPT},
                        allow_redirects=False)
    assert home.status_code == 303 and home.headers["Location"] == f"{web.url}/ui/"
    assert "Accept" in home.headers["Vary"]
    index = requests.get(f"{web.url}/")
    assert index.headers["Content-Type"].startswith("application/json")
    assert index.json()["service"] == "OPUS" and "Accept" in index.headers["Vary"]
    for url in (web.rest("echo"), f"{web.url}/capabilities"):
        answer = requests.get(url, headers={"Accept": BROWSER_ACCEPT})
        assert "xml" in answer.headers["Content-Type"] and answer.content.startswith(b"<?xml")
    page = requests.get(f"{web.url}/ui/jobs")
    assert page.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert requests.get(f"{web.url}/ui/static/opus.js").headers["Content-Type"].startswith(
        ("application/javascript", "text/javascript"))
    missing = requests.get(f"{web.url}/ui/jobs/{'0' * 32}")
    assert missing.status_code == 404 and "text/html" in missing.headers["Content-Type"]
    assert "no job" in html.fromstring(missing.content).xpath("string(//*[@role='alert'])")


def test_the_session_cookie_acts_only_with_its_csrf_token(web: Server) -> None:
    token = user(web, "carol")
    session = requests.Session()
    answer = session.post(f"{web.url}/ui/signin", data={"token": token},
                          allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == f"{web.url}/ui/jobs"
    cookie = answer.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # http base_url
    form = session.get(f"{web.url}/ui/activities/echo")
    csrf = csrf_of(form)
    action = f"{web.url}/ui/activities/echo"
    data = {"text": "carol's", "PHASE": "RUN"}
    for extra, headers in (({}, {}), ({"csrf_token": "0" * 64}, {}),
                           ({"csrf_token": csrf}, {"Origin": "http://evil.example"}),
                           ({"csrf_token": csrf}, {"Sec-Fetch-Site": "cross-site"})):
        refused = session.post(action, data={**data, **extra}, headers=headers,
                               allow_redirects=False)
        assert refused.status_code == 403, (extra, headers, refused.text)
        assert "text/html" in refused.headers["Content-Type"]
    made = session.post(action, data={**data, "csrf_token": csrf},
                        headers={"Origin": web.url}, allow_redirects=False)
    assert made.status_code == 303, made.text
    job_id = JOB_PAGE.search(made.headers["Location"]).group(1)  # type: ignore[union-attr]
    bearer = {"Authorization": f"Bearer {token}"}
    owner = requests.get(f"{web.rest('echo')}/{job_id}/owner", headers=bearer).text
    assert owner.startswith("carol-")
    # Reading with the cookie works everywhere (images, downloads, WAIT of the page)...
    assert session.get(f"{web.rest('echo')}/{job_id}").status_code == 200
    # ...but a change of a UWS resource ignores it: another site's form acts anonymously.
    forged = session.post(web.rest("echo"), data={"text": "forged"}, allow_redirects=False)
    assert forged.status_code == 303
    assert session.get(f"{forged.headers['Location']}/owner").text == ""
    # A new session has a new CSRF token; the old one is refused.
    again = signed_in(web, token)
    refused = again.post(action, data={**data, "csrf_token": csrf}, allow_redirects=False)
    assert refused.status_code == 403
    out = again.post(f"{web.url}/ui/signout",
                     data={"csrf_token": csrf_of(again.get(f"{web.url}/ui/"))},
                     allow_redirects=False)
    assert out.status_code == 303 and "max-age=0" in out.headers["Set-Cookie"].lower()


def test_a_stale_cookie_signs_out_and_changes_nothing(web: Server) -> None:
    stale = {"Cookie": "opus_session=0123abcd.not-a-token-any-more"}
    page = requests.get(f"{web.url}/ui/", headers=stale)
    assert page.status_code == 200 and "Not signed in" in page.text
    assert "max-age=0" in page.headers["Set-Cookie"].lower()
    assert requests.get(web.rest("echo"), headers=stale).status_code == 200  # anonymous
    refused = requests.post(f"{web.url}/ui/activities/echo", headers=stale,
                            data={"text": "x", "csrf_token": "x"}, allow_redirects=False)
    assert refused.status_code == 401 and "sign in again" in refused.text


def test_sign_in_redirects_only_to_pages_and_refuses_other_sites(web: Server) -> None:
    token = user(web, "dave")
    for target, expected in (("//evil.example/x", "/ui/jobs"), ("https://evil.example", "/ui/jobs"),
                             ("/ui/jobs?phase=ERROR", "/ui/jobs?phase=ERROR"),
                             ("/rest/echo", "/ui/jobs")):
        answer = requests.post(f"{web.url}/ui/signin", data={"token": token, "next": target},
                               allow_redirects=False)
        assert answer.headers["Location"] == f"{web.url}{expected}", target
    wrong = requests.post(f"{web.url}/ui/signin", data={"token": "nope"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    forged = requests.post(f"{web.url}/ui/signin", data={"token": token},
                           headers={"Origin": "http://evil.example"}, allow_redirects=False)
    assert forged.status_code == 403 and "Set-Cookie" not in forged.headers


def test_the_cookie_is_secure_behind_https() -> None:
    from bottle import HTTPResponse

    from opus.auth import Authenticator, Identity
    from opus.web.sessions import Sessions

    response = HTTPResponse()
    Sessions(Authenticator(lambda token: Identity("eve", "k")), "https://opus.example"
             ).sign_in(response, "a-token", "/opus/")
    cookie = dict(response.headerlist)["Set-Cookie"]
    assert "Secure" in cookie and "Path=/opus/" in cookie and "HttpOnly" in cookie


def test_the_job_list_filters_and_pages(web: Server) -> None:
    token = user(web, "erin")
    bearer = {"Authorization": f"Bearer {token}"}  # pages take the header too
    made = [requests.post(web.rest("echo"), data={"text": str(i)}, headers=bearer,
                          allow_redirects=False).headers["Location"].rsplit("/", 1)[1]
            for i in range(28)]
    made += [requests.post(web.rest("sleep"), data={}, headers=bearer,
                           allow_redirects=False).headers["Location"].rsplit("/", 1)[1]
             for _ in range(3)]

    def listed(url: str) -> tuple[list[str], html.HtmlElement]:
        answer = requests.get(url, headers=bearer)
        assert answer.status_code == 200, answer.text
        document = html.fromstring(answer.content)
        links = document.xpath("//table[@class='jobs']//td[1]/a/@href")
        return [str(link).rsplit("/", 1)[1] for link in links], document

    first, document = listed(f"{web.url}/ui/jobs")
    assert first == list(reversed(made))[:25]
    older = document.xpath("//a[@rel='next']/@href")[0]
    second, document = listed(older)
    assert second == list(reversed(made))[25:]
    assert not document.xpath("//a[@rel='next']")
    back, _ = listed(document.xpath("//a[@rel='prev']/@href")[0])
    assert back == first
    sleeps, _ = listed(f"{web.url}/ui/jobs?activity=sleep")
    assert sleeps == list(reversed(made[28:]))
    pending, _ = listed(f"{web.url}/ui/jobs?phase=PENDING&activity=echo")
    assert len(pending) == 25
    none, document = listed(f"{web.url}/ui/jobs?phase=COMPLETED")
    assert none == [] and "No job matches these filters" in document.text_content()
    today = dt.datetime.now(dt.timezone.utc).date()
    assert listed(f"{web.url}/ui/jobs?after={today + dt.timedelta(days=1)}")[0] == []
    assert listed(f"{web.url}/ui/jobs?before={today - dt.timedelta(days=1)}")[0] == []
    assert len(listed(f"{web.url}/ui/jobs?after={today}&before={today}")[0]) == 25
    bad = requests.get(f"{web.url}/ui/jobs?phase=SOON", headers=bearer)
    assert bad.status_code == 400 and "PHASE: must be one of" in bad.text


def test_what_users_typed_stays_text_on_the_pages(web: Server) -> None:
    evil = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    job_url = web.create("echo", text=evil, RUNID=evil)
    web.wait_final(job_url)
    job_id = job_url.rsplit("/", 1)[1]
    for url in (f"{web.url}/ui/jobs/{job_id}", f"{web.url}/ui/jobs",
                f"{web.url}/ui/activities/echo?from={job_id}"):
        answer = requests.get(url)
        assert answer.status_code == 200, url
        document = html.fromstring(answer.content)
        assert [s.get("src", "").rsplit("/", 1)[-1] for s in document.xpath("//script")] \
            == ["opus.js", "samp.js"], url
        assert document.xpath("//*[@onerror]") == [] and "alert(2)</script>" not in answer.text
    page = html.fromstring(requests.get(f"{web.url}/ui/jobs/{job_id}").content)
    assert evil in page.xpath("string(//h1)")
    assert page.xpath("string(//*[@id='result-output']//pre)") == evil + "\n"
    form = html.fromstring(requests.get(f"{web.url}/ui/activities/echo?from={job_id}").content)
    assert form.xpath("//input[@name='text']/@value") == [evil]  # run again: intact


def test_the_provenance_svg_links_its_nodes_to_the_pages(web: Server) -> None:
    from lxml import etree

    job_url = web.create("echo", text="linked")
    web.wait_final(job_url)
    job_id = job_url.rsplit("/", 1)[1]
    svg = requests.get(f"{web.url}/provsap", params={"ID": job_id, "DIRECTION": "FORTH",
                                                     "RESPONSEFORMAT": "svg"})
    names = {"s": "http://www.w3.org/2000/svg", "x": "http://www.w3.org/1999/xlink"}
    nodes = etree.fromstring(svg.content).xpath("//s:g[@class='node']", namespaces=names)
    assert len(nodes) >= 4
    for node in nodes:
        link = node.xpath(".//s:a", namespaces=names)[0]
        href = link.get("{http://www.w3.org/1999/xlink}href")
        assert href.startswith(f"{web.url}/ui/provenance/node?ID=opus%3A"), href
        assert link.get("target") == "_top"
    run = requests.get(f"{web.url}/ui/provenance/node", params={"ID": f"opus:act-{job_id}"},
                       allow_redirects=False)
    assert run.headers["Location"] == f"{web.url}/ui/jobs/{job_id}"
    gone = requests.get(f"{web.url}/ui/provenance/node", params={"ID": f"opus:act-{'0' * 32}"},
                        allow_redirects=False)
    assert gone.headers["Location"] == f"{web.url}/ui/provenance?ID=opus%3Aact-{'0' * 32}"
    page = requests.get(f"{web.url}/ui/provenance", params={"ID": job_id})
    document = html.fromstring(page.content)
    assert document.xpath("//object[@id='graph']/@data")[0].startswith(f"{web.url}/provsap?")
    formats = {link.split("RESPONSEFORMAT=")[1] for link in
               document.xpath("//ul[@class='downloads']//a/@href")}
    assert formats == {"application%2Fx-prov%2Bjson", "application%2Fx-prov%2Bxml",
                       "text%2Fprovenance-notation", "application%2Fx-votable%2Bxml",
                       "image%2Fsvg%2Bxml", "image%2Fpng"}
    assert requests.get(f"{web.url}/ui/provenance").status_code == 400


# -- gammapy_maps: previews of images, FITS and JSON; the README's screenshots -------------
@pytest.fixture(scope="module")
def demo_store(data_root: Path) -> Path:
    try:
        import gammapy  # noqa: F401
    except ImportError:
        if os.environ.get("OPUS_REQUIRE_GAMMAPY") == "1":
            raise
        pytest.skip("gammapy is not installed (the opus[gammapy] extra)")
    directory = data_root / "dl3"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_dl3.py"), str(directory),
                    "--seed", "0"], check=True, capture_output=True, timeout=180)
    return directory


def test_a_gammapy_maps_job_page_shows_its_products(web: Server, page: Any, shots: Shots,
                                                   demo_store: Path) -> None:
    docs = os.environ.get("OPUS_WEB_DOCS")
    page.goto(f"{web.url}/ui/")
    if docs:
        shots("home")
        shutil.copy(shots.directory / f"{shots.count:02d}-home.png", Path(docs) / "web-home.png")
    page.click("text=New gammapy_maps job")
    page.fill("#p-datastore", str(demo_store))
    page.fill("#c-runid", "Crab-like demo source")
    page.click("button:has-text('Create job')")
    page.wait_for_url(JOB_PAGE)
    started = time.monotonic()
    page.wait_for_selector("#job:is([data-phase=COMPLETED], [data-phase=ERROR])",
                           timeout=240_000)
    print(f"gammapy_maps job followed for {time.monotonic() - started:.1f} s")
    assert page.get_attribute("#job", "data-phase") == "COMPLETED", page.inner_text("main")
    page.wait_for_function("() => { const i = document.querySelector('#result-preview img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    counts = page.inner_text("#result-counts")
    assert "FITS headers" in counts and "PrimaryHDU" in counts and "CTYPE1=RA---" in counts
    assert "BinTableHDU" in counts  # gammapy's map files carry a BANDS table
    assert '"peak_significance"' in page.inner_text("#result-summary pre")
    assert page.locator("#result-counts a[download]").count() == 1
    path = shots("gammapy-job")
    assert page.evaluate("document.querySelector('article.result').id") == "result-preview"
    if docs:  # the top of the page, down to the picture and the JSON summary
        page.set_viewport_size({"width": 1100, "height": 1800})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(Path(docs) / "web-job-gammapy.png"))
    page.set_viewport_size({"width": 1400, "height": 900})
    page.click("a.button:has-text('Provenance')")
    wait_for_graph(page)
    page.wait_for_selector("#graph-fit:not([hidden])")  # a wide graph, fitted to the page
    room = page.evaluate("document.querySelector('.graph').clientWidth")
    fitted = page.evaluate("document.getElementById('graph').getBoundingClientRect().width")
    assert fitted <= room
    shots("gammapy-provenance")
    page.click("#graph-fit")
    assert page.evaluate("document.getElementById('graph').getBoundingClientRect().width") \
        > room  # its own size, scrolled
    page.click("#graph-fit")
    if docs:
        page.screenshot(path=str(Path(docs) / "web-provenance.png"), full_page=True)
    assert path.exists()
