"""gammapy_maps end to end: demo DL3 data -> job through the API on the local manager -> the
science checked independently of gammapy (astropy only).

Skipped when gammapy is not installed (``pip install -e '.[test,gammapy]'``, as
scripts/test.sh does). With ``OPUS_README_PREVIEW=PATH`` the preview PNG of the run is also
copied to PATH (scripts/make_readme_preview.py uses this for docs/gammapy_maps_preview.png).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import gammapy  # noqa: F401
except ImportError:
    if os.environ.get("OPUS_REQUIRE_GAMMAPY") == "1":  # CI: a broken install must fail
        raise
    pytest.skip("gammapy is not installed (the opus[gammapy] extra)", allow_module_level=True)

import numpy as np  # noqa: E402  (after the skip: numpy comes with gammapy)
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from conftest import (  # noqa: E402
    ROOT,
    UWS_NS,
    Server,
    _create_pg_database,
    _drop_pg_database,
    start_server,
)
from opus.activities.check import check_files  # noqa: E402

SOURCE = (83.63, 22.01)  # scripts/make_demo_dl3.py SOURCE_RA / SOURCE_DEC
OBS_IDS = (1001, 1002, 1003, 1004)
#: The job's parameters; offset_max cuts the corners of the map, so the offset cut is tested.
PARAMS = {"obs_ids": "1001, 1002,1003 1004", "ra": "83.63", "dec": "22.01", "width": "4",
          "binsz": "0.04", "emin": "0.3", "emax": "30", "nbins": "6", "projection": "TAN",
          "offset_max": "2.0", "correlation_radius": "0.1"}
OUTPUTS = {"counts", "exposure", "background", "excess", "significance", "preview", "summary"}


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dl3")
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_dl3.py"), str(directory),
                    "--seed", "0"], check=True, capture_output=True, timeout=120)
    print(f"demo data made in {time.monotonic() - started:.1f} s")
    return directory


@pytest.fixture(scope="module")
def server(backend: str, demo_store: Path, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server whose data roots (the folders a ``datastore`` may lie in) hold the demo
    data store, on each backend."""
    url = ""
    if backend == "postgresql":
        admin = request.getfixturevalue("postgres_admin_url")
        url = _create_pg_database(admin)
    srv = start_server(tmp_path_factory.mktemp(f"maps-{backend}"), url,
                       data_roots=json.dumps([str(demo_store)]))
    yield srv
    srv.stop()
    if url:
        _drop_pg_database(admin, url)


def expected_counts(store: Path, wcs: WCS, shape: tuple[int, int], emin: float, emax: float,
                    offset_max: float) -> int:
    """Events in the map and energy range, in pixels whose centre is within offset_max of the
    event's pointing (gammapy's offset-max safe mask), counted from the event lists."""
    ny, nx = shape
    total = 0
    for obs_id in OBS_IDS:
        events = Table.read(store / f"obs_{obs_id}.fits.gz", hdu="EVENTS")
        header = fits.getheader(store / f"obs_{obs_id}.fits.gz", "EVENTS")
        pointing = SkyCoord(header["RA_PNT"], header["DEC_PNT"], unit="deg", frame="icrs")
        energy = np.asarray(events["ENERGY"].quantity.to_value("TeV"))
        x, y = wcs.world_to_pixel(SkyCoord(events["RA"], events["DEC"], unit="deg", frame="icrs"))
        ix, iy = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (energy >= emin) & (energy < emax)
        centre = wcs.pixel_to_world(ix[inside], iy[inside])
        total += int(np.count_nonzero(centre.separation(pointing).deg < offset_max))
    return total


def test_description_checks() -> None:
    out = io.StringIO()
    assert check_files([ROOT / "activity_descriptions" / "gammapy_maps.xml"], out) == 0, out.getvalue()
    assert "OK (activity gammapy_maps)" in out.getvalue()


def test_gammapy_maps_end_to_end(server: Server, demo_store: Path) -> None:
    started = time.monotonic()
    job_url = server.create("gammapy_maps", datastore=str(demo_store), **PARAMS)
    document = server.wait_final(job_url, timeout=120)
    runtime = time.monotonic() - started
    phase = document.findtext("uws:phase", namespaces=UWS_NS)
    stderr = server.session.get(f"{job_url}/results/stderr").text
    assert phase == "COMPLETED", stderr

    results = {r.get("id") for r in document.iterfind("uws:results/uws:result", UWS_NS)}
    assert OUTPUTS <= results
    files = {}
    for name in OUTPUTS:
        response = server.session.get(f"{job_url}/results/{name}")
        assert response.status_code == 200, (name, response.status_code)
        files[name] = response.content
    assert files["preview"].startswith(b"\x89PNG\r\n\x1a\n")
    summary = json.loads(files["summary"])
    hdus = {name: fits.open(io.BytesIO(files[name]))
            for name in ("counts", "exposure", "background", "excess", "significance")}
    for hdul in hdus.values():
        assert np.isfinite(hdul[0].data).any()

    # The geometry asked for: a TAN map of 100 x 100 pixels of 0.04 deg around the target.
    counts_hdu = hdus["counts"][0]
    wcs = WCS(counts_hdu.header).celestial
    assert counts_hdu.data.shape == (6, 100, 100)
    assert wcs.wcs.ctype[0] == "RA---TAN" and np.allclose(abs(wcs.wcs.cdelt), 0.04)
    assert np.allclose(wcs.wcs.crval, SOURCE)

    # Counts: exactly the events inside the map, the energy range and the offset cut.
    counted = int(round(float(counts_hdu.data.sum())))
    expected = expected_counts(demo_store, wcs, counts_hdu.data.shape[1:], 0.3, 30.0, 2.0)
    assert counted == expected
    assert summary["counts"] == counted

    # Significance peak within one bin of the injected source, and clearly significant.
    significance = hdus["significance"][0]
    image = np.nan_to_num(significance.data[0], nan=-np.inf)
    peak_y, peak_x = np.unravel_index(np.argmax(image), image.shape)
    sig_wcs = WCS(significance.header).celestial
    source_x, source_y = sig_wcs.world_to_pixel(SkyCoord(*SOURCE, unit="deg"))
    offset_pixels = (float(peak_x - source_x), float(peak_y - source_y))
    # "Within one bin": the peak's bin is the source's bin or one of its eight neighbours
    # (the source may lie anywhere in its bin, so up to 1.5 px from a neighbour's centre).
    source_bin = (int(np.round(source_x)), int(np.round(source_y)))
    assert abs(peak_x - source_bin[0]) <= 1 and abs(peak_y - source_bin[1]) <= 1, offset_pixels
    assert image[peak_y, peak_x] > 10
    assert summary["peak_significance"] == pytest.approx(float(image[peak_y, peak_x]))
    assert summary["gammapy_version"].startswith("2.")
    assert summary["obs_ids"] == list(OBS_IDS)
    assert len(summary["input_files"]) == 4

    # The provenance of the maps records the gammapy version and the hashes of the inputs.
    job_id = job_url.rsplit("/", 1)[1]
    provenance = server.session.get(f"{server.url}/provsap",
                                    params={"ID": job_id, "DIRECTION": "FORTH"})
    assert provenance.status_code == 200
    assert f"gammapy=={gammapy.__version__}" in provenance.text
    for item in summary["input_files"]:
        digest = hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest()
        assert digest == item["sha256"] and digest in provenance.text
    maps = {r.get("id"): r for r in document.iterfind("uws:results/uws:result", UWS_NS)}
    assert hashlib.sha256(files["counts"]).hexdigest() in provenance.text
    assert int(maps["counts"].get("size")) == len(files["counts"])

    print(f"gammapy_maps job {runtime:.1f} s: counts {counted} (expected {expected}), excess "
          f"{summary['excess']:.1f}, peak {summary['peak_significance']:.1f} sigma, "
          f"{offset_pixels[0]:+.2f}/{offset_pixels[1]:+.2f} px "
          f"({summary['peak_offset_deg']:.3f} deg) from the source")
    target = os.environ.get("OPUS_README_PREVIEW")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(files["preview"])


@pytest.mark.parametrize("params, message", [
    ({"datastore": "{store}/nonexistent"}, "datastore: no such directory on the server"),
    ({"obs_ids": "1001, x"}, "obs_ids: 'x' is not an observation id"),
    ({"obs_ids": "999"}, "obs_ids: not in the data store: 999"),
    ({"emin": "10", "emax": "1"}, "emin: must be less than emax"),
])
def test_bad_input_is_a_clear_error(server: Server, demo_store: Path, params: dict,
                                    message: str) -> None:
    given = {name: value.format(store=demo_store) for name, value in params.items()}
    job_url = server.create("gammapy_maps", **{"datastore": str(demo_store), **given})
    document = server.wait_final(job_url, timeout=60)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "ERROR"
    summary = document.findtext("uws:errorSummary/uws:message", namespaces=UWS_NS) or ""
    assert message in summary, summary


def test_server_rejects_out_of_range_parameters(server: Server) -> None:
    response = server.session.post(server.rest("gammapy_maps"), allow_redirects=False,
                                   data={"datastore": "/x", "dec": "95", "PHASE": "RUN"})
    assert response.status_code == 400 and "dec" in response.text
    response = server.session.post(server.rest("gammapy_maps"), allow_redirects=False,
                                   data={"datastore": "/x", "projection": "AIT"})
    assert response.status_code == 400 and "projection" in response.text


def test_gammapy_maps_on_slurm(slurm_available: bool, demo_store: Path,
                               tmp_path: Path) -> None:
    """The same science through the SLURM cluster (on SQLite only: the store is tested on
    both backends above)."""
    srv = start_server(tmp_path / "srv", "", manager="slurm",
                       data_roots=json.dumps([str(demo_store)]))
    try:
        check_slurm_run(srv, demo_store)
    finally:
        srv.stop()


def check_slurm_run(srv: Server, demo_store: Path) -> None:
    job_url = srv.create("gammapy_maps", datastore=str(demo_store), **PARAMS)
    document = srv.wait_final(job_url, timeout=180)
    assert document.findtext("uws:phase", namespaces=UWS_NS) == "COMPLETED", \
        srv.session.get(f"{job_url}/results/stderr").text
    counts = fits.open(io.BytesIO(srv.session.get(f"{job_url}/results/counts").content))[0]
    wcs = WCS(counts.header).celestial
    assert int(round(float(counts.data.sum()))) == expected_counts(
        demo_store, wcs, counts.data.shape[1:], 0.3, 30.0, 2.0)
    provenance = srv.session.get(f"{srv.url}/provsap",
                                 params={"ID": job_url.rsplit("/", 1)[1], "DIRECTION": "FORTH"})
    assert "SLURM_JOB_ID" in provenance.text  # the context records where it ran
