#!/usr/bin/env python3
"""Activity "gammapy_maps" (activity_descriptions/gammapy_maps.xml): DL3 events -> sky maps.

Run by the OPUS runner in the job's work directory, with OPUS's own Python (the one that has
the ``gammapy`` extra: ``pip install -e '.[gammapy]'``). The parameters are read from the JSON
file named by ``$OPUS_PARAMETERS_FILE``, else from environment variables of the same names,
so the script also runs by hand::

    datastore=/data/dl3 ra=83.63 dec=22.01 python scripts/gammapy_maps.py

Steps, all with gammapy's own tools: open the data store (``DataStore.from_dir``), select the
observations (given ids, or all whose pointing can reach the map), and for each one
``MapDatasetMaker`` (counts, exposure, IRF background, energy dispersion), ``SafeMaskMaker``
(method ``offset-max``: only pixels whose centre lies within ``offset_max`` of the
pointing), ``FoVBackgroundMaker`` (``background_method=fov``: the IRF background scaled to the
counts outside a circle of ``exclusion_radius`` around the target) ; the datasets are stacked
and ``ExcessMapEstimator`` (Li & Ma, over ``correlation_radius``, whole energy range) makes the
excess and significance maps.

Writes, in the work directory: counts.fits (counts cube), exposure.fits, background.fits
(the background model cube, after the FoV normalisation), excess.fits, significance.fits
(gammapy WCS map format), preview.png (the significance map) and summary.json.

Bad input: one line ``gammapy_maps: error: <parameter>: <what is wrong>`` on stderr and
exit status 2 (the runner shows the last stderr line as the job's error summary).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

PARAMETERS = ("datastore", "obs_ids", "ra", "dec", "width", "binsz", "emin", "emax", "nbins",
              "projection", "offset_max", "correlation_radius", "exclusion_radius",
              "background_method", "tmin", "tmax")
DEFAULTS = {"obs_ids": "all", "ra": "83.63", "dec": "22.01", "width": "3", "binsz": "0.02",
            "emin": "0.5", "emax": "50", "nbins": "10", "projection": "CAR",
            "offset_max": "2.5", "correlation_radius": "0.1", "exclusion_radius": "0.3",
            "background_method": "fov", "tmin": "0", "tmax": "1000000"}
MAX_VOXELS = 20_000_000  # counts cube size limit (pixels x energy bins): memory and time
MAX_OBSERVATIONS = 500
OUTPUTS = {"counts": "counts.fits", "exposure": "exposure.fits",
           "background": "background.fits", "excess": "excess.fits",
           "significance": "significance.fits", "preview": "preview.png",
           "summary": "summary.json"}


class InputError(Exception):
    """A parameter the activity cannot use; the message names it."""


def log(message: str) -> None:
    print(f"gammapy_maps: {message}", flush=True)


# -- parameters ---------------------------------------------------------------------------

def read_parameters() -> dict[str, str]:
    """The job's parameters: $OPUS_PARAMETERS_FILE (JSON), else the environment, else defaults."""
    values: dict[str, str] = {}
    path = os.environ.get("OPUS_PARAMETERS_FILE")
    if path and Path(path).is_file():
        values = {str(k): str(v) for k, v in json.loads(Path(path).read_text()).items()}
    for name in PARAMETERS:
        if name not in values and os.environ.get(name) is not None:
            values[name] = os.environ[name]
    for name, default in DEFAULTS.items():
        if values.get(name, "").strip() == "":
            values[name] = default
    return values


def number(values: dict[str, str], name: str, low: float, high: float,
           integer: bool = False) -> float:
    text = values.get(name, "").strip()
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InputError(f"{name}: must be {kind} (got {text!r})") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InputError(f"{name}: must be between {low:g} and {high:g} (got {text})")
    return value


@dataclass
class Config:
    datastore: Path
    obs_ids: list[int] | None
    ra: float
    dec: float
    width: float
    binsz: float
    emin: float
    emax: float
    nbins: int
    projection: str
    offset_max: float
    correlation_radius: float
    exclusion_radius: float
    background: str
    tmin: float = 0.0
    tmax: float = 1e6


def parse_config(values: dict[str, str]) -> Config:
    """Check every parameter (the server checked types and ranges too; a run by hand has not)."""
    text = values.get("datastore", "").strip()
    if not text:
        raise InputError("datastore: required (a data store directory on the server)")
    datastore = Path(text)
    if not datastore.is_absolute():
        raise InputError(f"datastore: must be an absolute path on the server (got {text!r})")
    if not datastore.exists():
        raise InputError(f"datastore: no such directory on the server: {text}")
    if datastore.is_file():
        # An observation's file (an ObsCore access_url names one): its data store.
        datastore = datastore.parent
    if not datastore.is_dir():
        raise InputError(f"datastore: not a directory: {text}")
    if not any((datastore / f"hdu-index.fits{ext}").is_file() for ext in ("", ".gz")):
        raise InputError(f"datastore: {datastore} has no hdu-index.fits(.gz); not a GADF "
                         "data store")

    ids_text = values.get("obs_ids", "").strip()
    obs_ids = None
    if ids_text.lower() not in ("", "all", "*"):
        obs_ids = []
        for item in re.split(r"[\s,;]+", ids_text):
            if not item:
                continue
            if not re.fullmatch(r"[0-9]{1,18}", item):
                raise InputError(f"obs_ids: {item!r} is not an observation id (use integers "
                                 "separated by commas or spaces, or 'all')")
            obs_ids.append(int(item))
        obs_ids = sorted(set(obs_ids))
        if len(obs_ids) > MAX_OBSERVATIONS:
            raise InputError(f"obs_ids: at most {MAX_OBSERVATIONS} observations "
                             f"(got {len(obs_ids)})")

    projection = values.get("projection", "").strip().upper()
    if projection not in ("CAR", "TAN"):
        raise InputError(f"projection: must be CAR or TAN (got {values.get('projection')!r})")
    background = values.get("background_method", "").strip().lower()
    if background not in ("fov", "irf"):
        raise InputError(f"background_method: must be fov or irf "
                         f"(got {values.get('background_method')!r})")

    config = Config(
        datastore=datastore, obs_ids=obs_ids,
        ra=number(values, "ra", 0, 360), dec=number(values, "dec", -90, 90),
        width=number(values, "width", 0.1, 20), binsz=number(values, "binsz", 0.005, 1),
        emin=number(values, "emin", 0.01, 500), emax=number(values, "emax", 0.01, 500),
        nbins=int(number(values, "nbins", 1, 100, integer=True)), projection=projection,
        offset_max=number(values, "offset_max", 0.1, 10),
        correlation_radius=number(values, "correlation_radius", 0, 2),
        exclusion_radius=number(values, "exclusion_radius", 0, 10), background=background,
        tmin=number(values, "tmin", 0, 1e6), tmax=number(values, "tmax", 0, 1e6),
    )
    if config.tmin >= config.tmax:
        raise InputError(f"tmin: must be less than tmax (got tmin={config.tmin:g}, "
                         f"tmax={config.tmax:g} MJD)")
    if config.emin >= config.emax:
        raise InputError(f"emin: must be less than emax (got emin={config.emin:g} TeV, "
                         f"emax={config.emax:g} TeV)")
    if config.binsz > config.width:
        raise InputError(f"binsz: must not exceed width (got binsz={config.binsz:g}, "
                         f"width={config.width:g} deg)")
    pixels = math.ceil(config.width / config.binsz) ** 2
    if pixels * config.nbins > MAX_VOXELS:
        raise InputError(f"binsz: the counts cube would have {pixels * config.nbins:,} bins "
                         f"({pixels:,} pixels x {config.nbins} energy bins), more than "
                         f"{MAX_VOXELS:,}; use a larger binsz, a smaller width or fewer bins")
    return config


# -- the analysis -------------------------------------------------------------------------

def select_observations(config: Config):
    import astropy.units as u
    import numpy as np
    from astropy.coordinates import SkyCoord
    from gammapy.data import DataStore

    try:
        store = DataStore.from_dir(config.datastore)
    except Exception as error:  # any unreadable index: the user's input, not our fault
        raise InputError(f"datastore: cannot open {config.datastore} as a GADF data store "
                         f"({type(error).__name__}: {error})") from None
    table = store.obs_table
    if table is None or len(table) == 0:
        raise InputError(f"datastore: {config.datastore} lists no observations")
    known = [int(i) for i in table["OBS_ID"]]
    if config.obs_ids is not None:
        missing = sorted(set(config.obs_ids) - set(known))
        if missing:
            raise InputError(f"obs_ids: not in the data store: {', '.join(map(str, missing[:20]))}"
                             f" (it has {len(known)} observations, ids {min(known)} to {max(known)})")
        ids = config.obs_ids
    else:
        # Only observations whose offset cut reaches the map can contribute.
        target = SkyCoord(config.ra, config.dec, unit="deg", frame="icrs")
        pointing = SkyCoord(table["RA_PNT"], table["DEC_PNT"], unit="deg", frame="icrs")
        reach = (config.offset_max + config.width / math.sqrt(2)) * u.deg
        near = np.asarray(pointing.separation(target) < reach)
        ids = sorted(int(i) for i in np.asarray(known)[near])
        if not ids:
            raise InputError(f"obs_ids: none of the {len(known)} observations of the data store "
                             f"points within {reach.value:.2f} deg of RA={config.ra:g} "
                             f"Dec={config.dec:g}")
        ids = ids[:MAX_OBSERVATIONS]
    required = ["aeff", "bkg"]  # both background methods start from the IRF background
    try:
        observations = store.get_observations(ids, required_irf=required)
    except Exception as error:
        raise InputError(f"datastore: cannot read observations {ids[:20]}: "
                         f"{type(error).__name__}: {error}") from None
    files = sorted({Path(store.hdu_table.hdu_location(obs_id=i, hdu_type="events").path())
                    for i in ids})
    if (config.tmin, config.tmax) != (0.0, 1e6):
        from astropy.time import Time

        # MJD in TT, the time scale of GADF event lists (TIMESYS) and of their ObsCore rows.
        interval = Time([config.tmin, config.tmax], format="mjd", scale="tt")
        kept = [obs for obs in observations
                if obs.tstop > interval[0] and obs.tstart < interval[1]]
        if not kept:
            raise InputError(f"tmin: no observation of {ids[:20]} overlaps MJD "
                             f"{config.tmin:g} to {config.tmax:g}")
        from gammapy.data import Observations

        observations = Observations(kept).select_time(interval)
    return observations, files


def make_maps(config: Config, observations):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from gammapy.datasets import MapDataset
    from gammapy.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
    from gammapy.maps import MapAxis, WcsGeom
    from regions import CircleSkyRegion

    target = SkyCoord(config.ra, config.dec, unit="deg", frame="icrs")
    energy = MapAxis.from_energy_bounds(config.emin, config.emax, nbin=config.nbins,
                                        unit="TeV", name="energy")
    # True energies reach beyond the reconstructed range (a factor 2 each side), at the
    # same density of bins, so the exposure covers what migrates into the range.
    per_decade = config.nbins / math.log10(config.emax / config.emin)
    nbin_true = min(200, max(3, math.ceil(per_decade * math.log10(4 * config.emax / config.emin))))
    energy_true = MapAxis.from_energy_bounds(config.emin / 2, config.emax * 2, nbin=nbin_true,
                                             unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=target, frame="icrs", width=config.width, binsz=config.binsz,
                          proj=config.projection, axes=[energy])
    stacked = MapDataset.create(geom, energy_axis_true=energy_true,
                                binsz_irf=max(config.binsz, 0.2), name="stacked")
    maker = MapDatasetMaker(selection=["counts", "exposure", "background", "edisp"])
    safe = SafeMaskMaker(methods=["offset-max"], offset_max=config.offset_max * u.deg)
    fov = None
    if config.background == "fov":
        exclusion = ~geom.to_image().region_mask(
            [CircleSkyRegion(target, config.exclusion_radius * u.deg)]) \
            if config.exclusion_radius > 0 else None
        fov = FoVBackgroundMaker(method="scale", exclusion_mask=exclusion)
    notes = []
    for observation in observations:
        dataset = maker.run(stacked.copy(name=f"obs-{observation.obs_id}"), observation)
        dataset = safe.run(dataset, observation)
        if fov is not None:
            dataset = fov.run(dataset)
            if not dataset.mask_safe.data.any():
                notes.append(f"observation {observation.obs_id}: FoV background normalisation "
                             "failed; observation left out")
        stacked.stack(dataset)
    return stacked, notes


def write_outputs(config: Config, stacked, observations, files, notes, started: float):
    import astropy
    import astropy.units as u
    import gammapy
    import numpy as np
    from astropy.coordinates import SkyCoord
    from gammapy.estimators import ExcessMapEstimator

    estimator = ExcessMapEstimator(correlation_radius=f"{config.correlation_radius} deg",
                                   selection_optional=[])
    maps = estimator.run(stacked)
    significance = maps["sqrt_ts"]
    excess = maps["npred_excess"]

    background = stacked.npred_background()
    stacked.counts.write(OUTPUTS["counts"], overwrite=True)
    stacked.exposure.write(OUTPUTS["exposure"], overwrite=True)
    background.write(OUTPUTS["background"], overwrite=True)
    excess.write(OUTPUTS["excess"], overwrite=True)
    significance.write(OUTPUTS["significance"], overwrite=True)

    image = significance.get_image_by_idx((0,))
    data = np.nan_to_num(image.data, nan=-np.inf)
    iy, ix = np.unravel_index(np.argmax(data), data.shape)
    peak = image.geom.pix_to_coord((ix, iy))
    peak_ra, peak_dec = (float(u.Quantity(c, "deg").to_value("deg")) for c in peak[:2])
    offset = SkyCoord(peak_ra, peak_dec, unit="deg").separation(
        SkyCoord(config.ra, config.dec, unit="deg")).deg
    make_preview(config, image, (peak_ra, peak_dec))

    counts = float(stacked.counts.data.sum())
    bkg = float(background.data.sum())
    summary = {
        "activity": "gammapy_maps",
        "gammapy_version": gammapy.__version__,
        "astropy_version": astropy.__version__,
        "numpy_version": np.__version__,
        "target": {"ra": config.ra, "dec": config.dec, "frame": "icrs", "unit": "deg"},
        "geometry": {"width_deg": config.width, "binsz_deg": config.binsz,
                     "npix": list(map(int, stacked.counts.geom.data_shape[::-1][:2])),
                     "projection": config.projection,
                     "energy_edges_tev": [float(e) for e in
                                          stacked.counts.geom.axes["energy"].edges.to_value("TeV")]},
        "offset_max_deg": config.offset_max,
        "background_method": config.background,
        "correlation_radius_deg": config.correlation_radius,
        "obs_ids": [int(o.obs_id) for o in observations],
        "livetime_s": float(sum(o.observation_live_time_duration.to_value("s")
                                for o in observations)),
        "counts": counts,
        "background": bkg,
        "excess": counts - bkg,
        "peak_significance": float(data[iy, ix]),
        "peak_ra": peak_ra,
        "peak_dec": peak_dec,
        "peak_offset_deg": float(offset),
        "input_files": [{"path": str(f), "sha256": sha256_of(f)} for f in files],
        "notes": notes,
        "runtime_s": round(time.monotonic() - started, 2),
    }
    Path(OUTPUTS["summary"]).write_text(json.dumps(summary, indent=1) + "\n")
    write_own_provenance(summary)
    return summary


def write_own_provenance(summary: dict) -> None:
    """PROV-JSON of what this run read (each DL3 file with its sha256) and which gammapy
    made the maps; the OPUS runner keeps provenance.json as a bundle of the job's
    provenance (ProvenanceDM: Used, SoftwareAgent)."""
    version = summary["gammapy_version"]
    document: dict = {
        "prefix": {"gm": "urn:opus:gammapy_maps:"},
        "activity": {"gm:run": {"prov:label": "gammapy_maps", "gm:gammapyVersion": version}},
        "agent": {"gm:gammapy": {"prov:type": {"$": "prov:SoftwareAgent",
                                               "type": "prov:QUALIFIED_NAME"},
                                 "prov:label": f"gammapy {version}"}},
        "wasAssociatedWith": {"_:assoc": {"prov:activity": "gm:run",
                                          "prov:agent": "gm:gammapy"}},
        "entity": {}, "used": {},
    }
    for index, item in enumerate(summary["input_files"]):
        name = f"gm:input{index}"
        document["entity"][name] = {"prov:label": Path(item["path"]).name,
                                    "prov:location": item["path"], "gm:sha256": item["sha256"]}
        document["used"][f"_:used{index}"] = {"prov:activity": "gm:run", "prov:entity": name,
                                              "prov:role": "dl3"}
    Path("provenance.json").write_text(json.dumps(document, indent=1) + "\n")


def make_preview(config: Config, image, peak: tuple[float, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(6.4, 5.4), dpi=100)
    axes = figure.add_subplot(projection=image.geom.wcs)
    shown = axes.imshow(image.data, origin="lower", cmap="inferno", interpolation="nearest")
    figure.colorbar(shown, ax=axes, label="significance (Li & Ma, sigma)")
    transform = axes.get_transform("icrs")
    axes.scatter([config.ra], [config.dec], transform=transform, marker="+", s=120,
                 color="cyan", label="target")
    axes.scatter([peak[0]], [peak[1]], transform=transform, marker="o", s=120,
                 facecolor="none", edgecolor="lime", label="peak")
    axes.legend(loc="upper right", fontsize="small")
    axes.set_xlabel("Right ascension (ICRS)")
    axes.set_ylabel("Declination (ICRS)")
    axes.set_title(f"gammapy_maps: significance, {config.emin:g}-{config.emax:g} TeV, "
                   f"r={config.correlation_radius:g} deg", fontsize="medium")
    figure.savefig(OUTPUTS["preview"], bbox_inches="tight")
    plt.close(figure)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    started = time.monotonic()
    # Matplotlib and astropy want writable config dirs; a cluster node's HOME may not be.
    os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="gammapy_maps-mpl-"))
    try:
        config = parse_config(read_parameters())
    except InputError as error:
        print(f"gammapy_maps: error: {error}", file=sys.stderr)
        return 2
    try:
        import gammapy
    except ImportError:
        print("gammapy_maps: error: gammapy is not installed in OPUS's Python "
              "(pip install -e '.[gammapy]')", file=sys.stderr)
        return 3
    from astropy.utils import iers

    iers.conf.auto_download = False  # no network on cluster nodes; shipped tables suffice
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # log(0) etc. in empty bins
    log(f"gammapy {gammapy.__version__}; data store {config.datastore}")
    try:
        observations, files = select_observations(config)
        log(f"{len(observations)} observations: {[o.obs_id for o in observations]}")
        stacked, notes = make_maps(config, observations)
    except InputError as error:
        print(f"gammapy_maps: error: {error}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"gammapy_maps: warning: {note}", file=sys.stderr)
    summary = write_outputs(config, stacked, observations, files, notes, started)
    log(f"counts {summary['counts']:.0f}, excess {summary['excess']:.1f}, peak significance "
        f"{summary['peak_significance']:.1f} at RA={summary['peak_ra']:.3f} "
        f"Dec={summary['peak_dec']:.3f}; {summary['runtime_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
