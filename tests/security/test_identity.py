"""Identity per IVOA SSO (issue 11, item 2), tried as an attacker would.

SSO 2.0 REC section 4 / SSO 2.x WD section 3 (``ivo://ivoa.net/sso#BasicAA``), WD section 2.1
(one ``WWW-Authenticate`` challenge per scheme: ``Bearer``, ``ivoa_bearer``), 2.3
(``x-vo-authenticated``), section 3.10 (``ivo://ivoa.net/sso#OAuth`` for Bearer tokens);
VOResource 1.1 (``securityMethod``: at most one per interface, an interface without one for
anonymous access). Users have a stable id: a name removed and created again starts empty.
Tokens expire and are revoked, and stop working within the authenticator's cache TTL
(``auth_cache_ttl``). Forwarded headers and a proxy's identity header are believed only
from ``trusted_proxies``; every URL the server writes starts with ``base_url`` otherwise.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import subprocess
import sys
import time
import uuid

import pytest
import pyvo.io.vosi
import requests
from lxml import etree

from conftest import ROOT, UWS_NS, Server
from opus.config import SettingsError, load_settings

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
OAUTH = "ivo://ivoa.net/sso#OAuth"
BASIC_AA = "ivo://ivoa.net/sso#BasicAA"
EVIL = "evil.example"


def opus_users(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`opus users ...` against the server's own database (``server.env``)."""
    return subprocess.run([sys.executable, "-m", "opus.cli", "users", *args], env=server.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def new_user(server: Server, prefix: str, *options: str) -> tuple[str, str]:
    """A fresh user on ``server``: (name, first token)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    done = opus_users(server, "add", name, *options)
    assert done.returncode == 0, done.stderr
    return name, done.stdout.strip()


def new_token(server: Server, name: str, *options: str) -> str:
    done = opus_users(server, "token", "add", name, *options)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(name: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def challenges(response: requests.Response) -> list[str]:
    """Each ``WWW-Authenticate`` header of ``response`` (requests joins them in one)."""
    return list(response.raw.headers.getlist("WWW-Authenticate"))


def create(server: Server, headers: dict[str, str], **params: str) -> str:
    response = requests.post(server.rest("echo"), data={"text": "mine", **params},
                             headers=headers, allow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["Location"]


def wait_final(server: Server, job_url: str, headers: dict[str, str]) -> etree._Element:
    deadline = time.monotonic() + 60
    while True:
        response = requests.get(job_url, params={"WAIT": "10"}, headers=headers)
        assert response.status_code == 200, response.text
        job = etree.fromstring(response.content)
        phase = job.findtext("uws:phase", namespaces=UWS_NS)
        if phase not in {"PENDING", "QUEUED", "EXECUTING"}:
            return job
        assert time.monotonic() < deadline, phase


# -- stable identity -----------------------------------------------------------------------

def test_a_recreated_name_does_not_see_the_old_users_jobs(server: Server) -> None:
    name, old_token = new_user(server, "dora")
    job_url = create(server, bearer(old_token), PHASE="RUN")
    job_id = job_url.rsplit("/", 1)[1]
    assert opus_users(server, "remove", name).returncode == 0
    again = opus_users(server, "add", name)
    assert again.returncode == 0, again.stderr
    new_token_ = again.stdout.strip()
    as_new = bearer(new_token_)
    listed = requests.get(server.rest("echo"), headers=as_new)
    assert listed.status_code == 200
    assert listed.headers["x-vo-authenticated"] == name  # the same name...
    assert job_id not in listed.text  # ...but not the same user
    for path in ("", "/phase", "/parameters", "/results", "/owner"):
        assert requests.get(f"{job_url}{path}", headers=as_new).status_code == 403, path
    assert requests.delete(job_url, headers=as_new, allow_redirects=False).status_code == 403
    # and Basic with the new name and password is the new user too
    assert job_id not in requests.get(server.rest("echo"), headers=basic(name, new_token_)).text


# -- tokens: expiry, revocation, the cache ---------------------------------------------------

@pytest.fixture
def short_cache(server_factory) -> Server:
    """A server whose workers keep a checked credential for one second only."""
    return server_factory(auth_cache_ttl=1)


def test_expired_and_revoked_tokens_get_401(short_cache: Server) -> None:
    """An expired token, used before its expiry or not, gets 401 (Bearer and Basic); a
    revoked one gets 401 within the cache TTL while the user's other token still works.

    One test (one server): the revocation scenario runs while the expiring tokens wait for
    their expiry, instead of the test sleeping through that window."""
    name, _ = new_user(short_cache, "erin")
    # a wide window: each `opus users` takes a few seconds on a loaded machine
    expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=15)
    used = new_token(short_cache, name, "--expires", expiry.isoformat(),
                     "--label", "used before expiry")
    first = requests.get(short_cache.rest("echo"), headers=bearer(used))
    assert dt.datetime.now(dt.timezone.utc) < expiry, "too slow to use it before expiry"
    assert first.status_code == 200 and first.headers["x-vo-authenticated"] == name
    unused = new_token(short_cache, name, "--expires", expiry.isoformat())

    # meanwhile: revocation (another user's tokens, which do not expire in this window)
    revoked_a_token(short_cache)

    # past the expiry and the cache TTL (1 s)
    time.sleep(max(0.0, (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.5)
    for token in (used, unused):
        refused = requests.get(short_cache.rest("echo"), headers=bearer(token))
        assert refused.status_code == 401, refused.text
        assert "x-vo-authenticated" not in refused.headers
        assert requests.get(short_cache.rest("echo"),
                            headers=basic(name, token)).status_code == 401
    listing = opus_users(short_cache, "token", "list", name).stdout
    assert "used before expiry" in listing
    assert (listing.count("expired"), listing.count("active")) == (2, 1)  # the first token


def revoked_a_token(short_cache: Server) -> None:
    """A revoked token gets 401 within the cache TTL; the user's other token still works."""
    name, first = new_user(short_cache, "fred")
    second = new_token(short_cache, name, "--label", "laptop", "--expires", "30")
    for token in (first, second):
        assert requests.get(short_cache.rest("echo"), headers=bearer(token)).status_code == 200
    listing = opus_users(short_cache, "token", "list", name)
    assert listing.returncode == 0
    (laptop,) = [line for line in listing.stdout.splitlines() if "laptop" in line]
    token_id = laptop.split()[0]
    assert opus_users(short_cache, "token", "revoke", name, token_id).returncode == 0
    time.sleep(1.5)  # the cache TTL
    assert requests.get(short_cache.rest("echo"), headers=bearer(second)).status_code == 401
    assert requests.get(short_cache.rest("echo"), headers=bearer(first)).status_code == 200
    assert "revoked" in opus_users(short_cache, "token", "list", name).stdout
    # revoked twice, or another user's token, or a token id that does not exist: refused
    other, _ = new_user(short_cache, "gina")
    for user, number in ((name, token_id), (other, token_id), (name, "99999")):
        refused = opus_users(short_cache, "token", "revoke", user, number)
        assert refused.returncode == 1 and refused.stderr, (user, number)


def test_token_cli_refuses_bad_input(server: Server) -> None:
    name, _ = new_user(server, "hank")
    for expires in ("yesterday", "0", "-1", "2001-01-01", "2001-01-01T00:00:00Z"):
        done = opus_users(server, "token", "add", name, "--expires", expires)
        assert done.returncode != 0 and done.stdout == "", expires
        assert "expires" in done.stderr, done.stderr
    for command in (("add", "nobody-here"), ("list", "nobody-here")):
        done = opus_users(server, "token", *command)
        assert done.returncode == 1 and "nobody-here" in done.stderr
    dated = new_token(server, name, "--expires", "2999-01-01", "--label", "long")
    listed = opus_users(server, "token", "list", name).stdout
    assert "2999-01-01" in listed and dated not in listed  # a token is shown once only


def test_an_admin_sees_every_job(server: Server) -> None:
    _, alice = new_user(server, "alice")
    admin_name, admin = new_user(server, "root", "--admin")
    job_url = create(server, bearer(alice))
    seen = requests.get(job_url, headers=bearer(admin))
    assert seen.status_code == 200 and seen.headers["x-vo-authenticated"] == admin_name
    assert job_url.rsplit("/", 1)[1] in requests.get(server.rest("echo"),
                                                    headers=bearer(admin)).text


# -- schemes, challenges, x-vo-authenticated -------------------------------------------------

def test_401_carries_one_challenge_per_scheme(server: Server) -> None:
    for header in ("Bearer not-a-token", "Basic dXNlcjpwdw==", "Basic !!!", "Negotiate abc",
                   "Bearer "):
        response = requests.get(server.rest("echo"), headers={"Authorization": header})
        assert response.status_code == 401, header
        assert challenges(response) == ['Bearer realm="OPUS"',
                                        'Basic realm="OPUS", charset="UTF-8"'], header
        assert "x-vo-authenticated" not in response.headers
    # DALI services too (their errors are VOTables)
    dali = requests.get(f"{server.url}/datalink/links", params={"ID": "x"},
                        headers=bearer("nope"))
    assert dali.status_code == 401 and len(challenges(dali)) == 2


def test_ivoa_bearer_says_where_tokens_come_from(server_factory) -> None:
    issuer = '{"standard_id": "ivo://ivoa.net/sso#tls-with-password", ' \
             '"access_url": "https://sso.example.org/login"}'
    srv = server_factory(auth_token_issuer=issuer, auth_basic="false")
    response = requests.get(srv.rest("echo"), headers=bearer("nope"))
    assert challenges(response) == [
        'ivoa_bearer standard_id="ivo://ivoa.net/sso#tls-with-password", '
        'access_url="https://sso.example.org/login"',
        'Bearer realm="OPUS"']
    _, token = new_user(srv, "ivan")
    # Basic is off: a right password no longer opens the door
    assert requests.get(srv.rest("echo"), headers=basic("ivan", token)).status_code == 401
    capabilities = etree.fromstring(requests.get(f"{srv.url}/capabilities").content)
    assert set(capabilities.xpath("//securityMethod/@standardID")) == {OAUTH}


def test_basic_auth(server: Server) -> None:
    name, token = new_user(server, "judy")
    other, other_token = new_user(server, "karl")
    ok = requests.get(server.rest("echo"), headers=basic(name, token))
    assert ok.status_code == 200 and ok.headers["x-vo-authenticated"] == name
    job_url = create(server, basic(name, token))
    assert requests.get(f"{job_url}/owner", headers=bearer(token)).text == name
    assert requests.get(job_url, headers=basic(other, other_token)).status_code == 403
    for refused in (basic(name, other_token),  # a valid token, of someone else
                    basic(other, token), basic(name, ""), basic(name, token + "x"),
                    basic("", token), {"Authorization": "Basic " + base64.b64encode(
                        token.encode()).decode()}):  # no user name at all
        response = requests.get(server.rest("echo"), headers=refused)
        assert response.status_code == 401, refused
    # requests' own Basic support, as a client library would use it
    assert requests.get(server.rest("echo"), auth=(name, token)).status_code == 200


def test_authenticated_answers_name_the_user(server: Server) -> None:
    name, token = new_user(server, "lena")
    anonymous = requests.get(f"{server.url}/capabilities")
    assert anonymous.status_code == 200 and "x-vo-authenticated" not in anonymous.headers
    # SSO 2.x WD 2.2: a 200 with challenges says authentication is optional
    assert len(challenges(anonymous)) == 2
    checked = requests.head(f"{server.url}/capabilities", headers=bearer(token))
    assert checked.status_code == 200 and checked.headers["x-vo-authenticated"] == name
    job_url = create(server, bearer(token), PHASE="RUN")
    job_id = job_url.rsplit("/", 1)[1]
    for response in (requests.get(job_url, headers=bearer(token)),
                     requests.get(f"{job_url}/phase", headers=bearer(token)),
                     requests.get(f"{server.rest('echo')}/nope", headers=bearer(token)),
                     requests.get(f"{server.url}/provsap", params={"ID": job_id},
                                  headers=bearer(token)),
                     requests.post(server.rest("echo"), data={"PHASE": "RUN"},
                                   headers=bearer(token), allow_redirects=False)):
        assert response.headers.get("x-vo-authenticated") == name, response.url
    for path in ("", "/phase"):
        assert "x-vo-authenticated" not in requests.get(server.rest("echo") + path).headers


def test_capabilities_list_security_methods(server: Server) -> None:
    response = requests.get(f"{server.url}/capabilities")
    root = etree.fromstring(response.content)
    capabilities = root.findall("capability")
    assert capabilities
    for capability in capabilities:
        interfaces = capability.findall("interface")
        assert {i.get(XSI_TYPE) for i in interfaces} == {"vs:ParamHTTP"}
        assert len({i.findtext("accessURL") for i in interfaces}) == 1
        methods = [[m.get("standardID") for m in i.findall("securityMethod")]
                   for i in interfaces]
        # anonymous first (no securityMethod), then one interface per scheme, each with
        # one securityMethod (VOResource 1.1 allows at most one), element order of
        # vr:Interface: accessURL before securityMethod
        assert methods == [[], [OAUTH], [BASIC_AA]]
        for interface in interfaces[1:]:
            assert [child.tag for child in interface] == ["accessURL", "securityMethod"]
            assert interface.find("securityMethod").text is None
    parsed = pyvo.io.vosi.parse_capabilities(io.BytesIO(response.content))
    uws = [c for c in parsed if c.standardid == "ivo://ivoa.net/std/UWS#rest-1.1"]
    assert [[m.standardid for m in i.securitymethods] for i in uws[0].interfaces] == \
        [[], [OAUTH], [BASIC_AA]]


# -- reverse proxies -------------------------------------------------------------------------

FORGED = {"Host": EVIL, "X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "https",
          "X-Forwarded-For": "203.0.113.9", "Forwarded": f"host={EVIL}"}


def every_written_url(server: Server, headers: dict[str, str],
                      expected: str = "") -> list[str]:
    """The URLs the server writes for one finished echo job: Location, the job document's
    result hrefs, the job list, DataLink access_url, the capabilities, the index."""
    created = requests.post(server.rest("echo"), data={"text": "x", "PHASE": "RUN"},
                            headers=headers, allow_redirects=False)
    assert created.status_code == 303, created.text
    location = created.headers["Location"]
    assert location.startswith(expected), location
    job_url = location.replace(location.split("/rest/")[0], server.url)
    job = wait_final(server, job_url, {})
    assert job.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED"
    urls = [location]
    job = etree.fromstring(requests.get(job_url, headers=headers).content)
    urls += job.xpath("//uws:result/@xlink:href", namespaces=UWS_NS)
    listing = etree.fromstring(requests.get(server.rest("echo"), headers=headers).content)
    urls += listing.xpath("//uws:jobref/@xlink:href", namespaces=UWS_NS)
    results = requests.get(f"{job_url}/results",
                           headers={**headers, "Accept": "application/json"}).json()
    urls += [result["href"] for result in results["results"]]
    (output,) = [r["href"] for r in results["results"] if r["id"] == "output"]
    answer = requests.get(f"{server.url}/datalink/links", params={"ID": output},
                          headers=headers)
    assert answer.status_code == 200, answer.text
    links = etree.fromstring(answer.content)
    names = [field.get("name") for field in links.iter("{*}FIELD")]
    access = [row.findall("{*}TD")[names.index("access_url")].text
              for row in links.iter("{*}TR")]
    assert access and all(access), access
    urls += access
    urls += links.xpath("//*[local-name()='PARAM'][@name='accessURL']/@value")
    urls += etree.fromstring(requests.get(f"{server.url}/capabilities",
                                          headers=headers).content).xpath("//accessURL/text()")
    urls += list(requests.get(f"{server.url}/", headers=headers).json()["job_lists"].values())
    assert len(urls) > 8
    return urls


def test_forged_host_headers_from_an_untrusted_peer_steer_no_url(server: Server) -> None:
    for url in every_written_url(server, FORGED, f"{server.url}/"):
        assert url.startswith(f"{server.url}/"), url
        assert EVIL not in url


def test_a_trusted_proxy_sets_the_public_url_and_the_user(server_factory) -> None:
    srv = server_factory(trusted_proxies='["127.0.0.0/8", "::1"]',
                         proxy_user_header="X-Remote-User")
    name, token = new_user(srv, "mona")
    public = {"X-Forwarded-Host": "opus.example.org", "X-Forwarded-Proto": "https"}
    for url in every_written_url(srv, public):
        assert url.startswith("https://opus.example.org/"), url
    # the nearest proxy's value counts (the last one); nonsense is ignored
    chained = {"X-Forwarded-Host": f"{EVIL}, opus.example.org", "X-Forwarded-Proto": "https"}
    assert every_written_url(srv, chained)[0].startswith("https://opus.example.org/rest/")
    for bad in ("opus.example.org/x", "a@b", "evil.example:99999", "x:1:2", ""):
        for url in every_written_url(srv, {"X-Forwarded-Host": bad,
                                           "X-Forwarded-Proto": "gopher"}):
            assert url.startswith(f"{srv.url}/"), (bad, url)
    # the authenticating proxy names the user
    as_proxy = {"X-Remote-User": name}
    seen = requests.get(srv.rest("echo"), headers=as_proxy)
    assert seen.status_code == 200 and seen.headers["x-vo-authenticated"] == name
    job_url = create(srv, as_proxy)
    assert requests.get(f"{job_url}/owner", headers=bearer(token)).text == name
    unknown = requests.get(srv.rest("echo"), headers={"X-Remote-User": "nobody-at-all"})
    assert unknown.status_code == 401
    # without the header, the proxy's clients still authenticate themselves
    assert requests.get(srv.rest("echo"), headers=bearer(token)).headers[
        "x-vo-authenticated"] == name


def test_an_identity_header_from_an_untrusted_peer_is_ignored(server_factory) -> None:
    srv = server_factory(trusted_proxies='["10.0.0.0/8"]', proxy_user_header="X-Remote-User")
    name, token = new_user(srv, "nina")
    job_url = create(srv, bearer(token))
    forged = {"X-Remote-User": name, **FORGED}
    for response in (requests.get(job_url, headers=forged),
                     requests.get(f"{job_url}/results", headers=forged)):
        assert response.status_code == 403
        assert "x-vo-authenticated" not in response.headers
    assert job_url.rsplit("/", 1)[1] not in requests.get(srv.rest("echo"), headers=forged).text
    for url in every_written_url(srv, forged):
        assert url.startswith(f"{srv.url}/"), url


# -- the rules, in-process -------------------------------------------------------------------

def test_proxy_rules() -> None:
    from opus.web.proxies import TrustedProxies

    proxies = TrustedProxies(("10.0.0.0/8", "192.0.2.7", "2001:db8::/32"))
    base = "http://opus.internal:8000/uws"
    environ = {"REMOTE_ADDR": "198.51.100.1", "HTTP_X_FORWARDED_FOR": "10.1.1.1",
               "HTTP_X_FORWARDED_HOST": EVIL, "HTTP_X_FORWARDED_PROTO": "https"}
    assert not proxies.trusts("198.51.100.1") and proxies.trusts("10.2.3.4")
    assert proxies.trusts("2001:db8::1") and not proxies.trusts("") and \
        not proxies.trusts(None) and not proxies.trusts("not an address")
    assert proxies.client_address(environ) == "198.51.100.1"
    assert proxies.root_url(environ, base) == base
    via = {**environ, "REMOTE_ADDR": "10.0.0.1"}
    assert proxies.root_url(via, base) == f"https://{EVIL}/uws"
    # X-Forwarded-For: the rightmost address that is no trusted proxy
    via["HTTP_X_FORWARDED_FOR"] = "203.0.113.5, 198.51.100.2, 192.0.2.7, 10.9.9.9"
    assert proxies.client_address(via) == "198.51.100.2"
    via["HTTP_X_FORWARDED_FOR"] = "203.0.113.5, garbage, 10.9.9.9"
    assert proxies.client_address(via) == "10.9.9.9"
    via["HTTP_X_FORWARDED_FOR"] = ""
    assert proxies.client_address(via) == "10.0.0.1"
    assert TrustedProxies(()).root_url(via, base) == base


@pytest.mark.parametrize("value", ['["10.0.0.0/33"]', '["proxy.example"]', '"10.0.0.1"'])
def test_trusted_proxies_are_checked_at_start(value: str) -> None:
    with pytest.raises(SettingsError, match="trusted_proxies|TRUSTED_PROXIES"):
        load_settings({"OPUS_TRUSTED_PROXIES": value})


def test_proxy_settings_parse() -> None:
    settings = load_settings({"OPUS_TRUSTED_PROXIES": '["10.0.0.0/8", "::1"]',
                              "OPUS_PROXY_USER_HEADER": "X-Remote-User"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "::1")
    assert settings.proxy_user_header == "X-Remote-User"
    with pytest.raises(Exception, match="proxy_user_header"):
        load_settings({"OPUS_PROXY_USER_HEADER": "X Remote: User"})
