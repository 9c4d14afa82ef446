#!/usr/bin/env python3
"""Write a small, deterministic, CTA-like DL3 data store in the GADF format.

    python scripts/make_demo_dl3.py OUTDIR [--seed N]

What it makes (a few hundred kB, a few seconds; needs ``pip install -e '.[gammapy]'``):

- four 20-minute observations of a point source, in wobble mode (pointings 0.5 deg north,
  south, east and west of it), from the CTA North site (La Palma), in January 2024;
- the source: at **RA = 83.63 deg, Dec = 22.01 deg** (ICRS; see ``SOURCE_RA``/``SOURCE_DEC``),
  a power law of index 2.5 and 1e-11 cm-2 s-1 TeV-1 at 1 TeV (about a quarter of the Crab),
  on top of a hadronic background;
- per observation one file ``obs_<OBS_ID>.fits.gz`` (OBS_ID 1001 to 1004) with the HDUs
  EVENTS (EVENT_ID, TIME, RA, DEC, ENERGY, ...; RA_PNT/DEC_PNT, OBS_MODE, GEOLON/GEOLAT/
  ALTITUDE, MJDREF... keywords), GTI, and the instrument response functions, made with
  gammapy's own classes: EFFECTIVE AREA (EffectiveAreaTable2D), ENERGY DISPERSION
  (EnergyDispersion2D), PSF (PSF3D) and BACKGROUND (Background3D);
- ``obs-index.fits.gz`` and ``hdu-index.fits.gz``, so ``gammapy.data.DataStore.from_dir(OUTDIR)``
  opens it.

The events are drawn from those same IRFs by gammapy's ``MapDatasetEventSampler`` with a
fixed seed, so a given ``--seed`` always gives the same events. The IRFs are analytic toys
with CTA-like magnitudes (not real CTA responses): effective area up to 4e5 m2 falling off
with offset, 10 % Gaussian energy resolution, a Gaussian PSF narrowing from 0.12 to 0.03 deg
with energy, a power-law background of index 2.7, Gaussian in the field of view.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SOURCE_RA = 83.63  # deg, ICRS: where the demo source is
SOURCE_DEC = 22.01
OBS_IDS = (1001, 1002, 1003, 1004)
WOBBLE = 0.5  # deg between pointing and source
LIVETIME_S = 1200.0  # per observation
DEADTIME_FRACTION = 0.02
START = "2024-01-10T22:00:00"  # first observation; the others follow at 30 min intervals
AMPLITUDE = 1e-11  # cm-2 s-1 TeV-1 at 1 TeV
INDEX = 2.5
FOV_MAX = 3.0  # deg: IRFs tabulated up to this offset; events drawn up to FOV_MAX - 0.5


def make_irfs():
    """Analytic CTA-like IRFs built with gammapy's IRF classes."""
    from gammapy.irf import Background3D, EffectiveAreaTable2D, EnergyDispersion2D, PSF3D
    from gammapy.maps import MapAxis

    energy_true = MapAxis.from_energy_bounds(0.03, 300, nbin=8, per_decade=True, unit="TeV",
                                             name="energy_true")
    energy = MapAxis.from_energy_bounds(0.03, 300, nbin=8, per_decade=True, unit="TeV",
                                        name="energy")
    offset = MapAxis.from_bounds(0, FOV_MAX, nbin=6, unit="deg", name="offset")
    migra = MapAxis.from_bounds(0.2, 5, nbin=96, node_type="edges", name="migra")
    rad = MapAxis.from_bounds(0, 0.6, nbin=60, unit="deg", name="rad")
    fov_lon = MapAxis.from_bounds(-FOV_MAX, FOV_MAX, nbin=24, unit="deg", name="fov_lon")
    fov_lat = MapAxis.from_bounds(-FOV_MAX, FOV_MAX, nbin=24, unit="deg", name="fov_lat")

    e_true = energy_true.center.to_value("TeV")[:, None]
    off = offset.center.to_value("deg")[None, :]
    area = 4e5 * (1 - np.exp(-((e_true / 0.08) ** 1.5))) * np.exp(-0.5 * (off / 2.0) ** 2)
    aeff = EffectiveAreaTable2D(axes=[energy_true, offset], data=area, unit="m2")

    edisp = EnergyDispersion2D.from_gauss(
        energy_axis_true=energy_true, migra_axis=migra, offset_axis=offset, bias=0, sigma=0.1)

    sigma = np.clip(0.12 * energy_true.center.to_value("TeV") ** -0.25, 0.03, 0.12)  # deg
    sigma_rad = np.deg2rad(sigma)[:, None, None]
    r = rad.center.to_value("rad")[None, None, :]
    psf_data = np.exp(-0.5 * (r / sigma_rad) ** 2) / (2 * np.pi * sigma_rad**2)
    psf_data = np.broadcast_to(psf_data, (energy_true.nbin, offset.nbin, rad.nbin))
    psf = PSF3D(axes=[energy_true, offset, rad], data=psf_data.copy(), unit="sr-1")

    e = energy.center.to_value("TeV")[:, None, None]
    lon = fov_lon.center.to_value("deg")[None, :, None]
    lat = fov_lat.center.to_value("deg")[None, None, :]
    rate = 5e-5 * e**-2.7 * np.exp(-0.5 * (lon**2 + lat**2) / 1.5**2)  # s-1 MeV-1 sr-1
    bkg = Background3D(axes=[energy, fov_lon, fov_lat], data=rate, unit="s-1 MeV-1 sr-1")
    irfs = {"aeff": aeff, "edisp": edisp, "psf": psf, "bkg": bkg}
    for irf in irfs.values():
        irf.meta.update(TELESCOP="CTA", INSTRUME="Northern Array", ORIGIN="OPUS demo (toy IRFs)")
    return irfs


def simulate(outdir: Path, seed: int) -> list[Path]:
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time
    from gammapy.data import FixedPointingInfo, Observation, observatory_locations
    from gammapy.datasets import MapDataset, MapDatasetEventSampler
    from gammapy.makers import MapDatasetMaker
    from gammapy.maps import MapAxis, WcsGeom
    from gammapy.modeling.models import (
        FoVBackgroundModel, PointSpatialModel, PowerLawSpectralModel, SkyModel)

    irfs = make_irfs()
    source = SkyCoord(SOURCE_RA, SOURCE_DEC, unit="deg", frame="icrs")
    location = observatory_locations["cta_north"]
    reference = Time("2024-01-01T00:00:00", scale="tt")
    start = Time(START, scale="utc")
    energy = MapAxis.from_energy_bounds(0.1, 100, nbin=5, per_decade=True, unit="TeV",
                                        name="energy")
    energy_true = MapAxis.from_energy_bounds(0.05, 200, nbin=5, per_decade=True, unit="TeV",
                                             name="energy_true")
    migra = MapAxis.from_bounds(0.5, 2, nbin=60, node_type="edges", name="migra")
    model = SkyModel(
        spectral_model=PowerLawSpectralModel(index=INDEX, amplitude=f"{AMPLITUDE} cm-2 s-1 TeV-1",
                                             reference="1 TeV"),
        spatial_model=PointSpatialModel(lon_0=f"{SOURCE_RA} deg", lat_0=f"{SOURCE_DEC} deg",
                                        frame="icrs"),
        name="demo-source",
    )
    paths = []
    # Wobble offsets: north, south, east, west (position angle 0, 180, 90, 270 deg).
    for number, (obs_id, angle) in enumerate(zip(OBS_IDS, (0, 180, 90, 270))):
        pointing = source.directional_offset_by(angle * u.deg, WOBBLE * u.deg)
        tstart = start + number * 30 * u.min
        livetime = LIVETIME_S * u.s
        obs = Observation.create(
            pointing=FixedPointingInfo(fixed_icrs=pointing), location=location, obs_id=obs_id,
            tstart=tstart, tstop=tstart + livetime / (1 - DEADTIME_FRACTION),
            irfs=irfs, deadtime_fraction=DEADTIME_FRACTION, reference_time=reference)
        geom = WcsGeom.create(skydir=pointing, width=2 * (FOV_MAX - 0.5), binsz=0.04,
                              frame="icrs", axes=[energy])
        empty = MapDataset.create(geom, energy_axis_true=energy_true, migra_axis=migra,
                                  binsz_irf=0.25, name=f"obs-{obs_id}")
        dataset = MapDatasetMaker(selection=["exposure", "background", "psf", "edisp"]).run(
            empty, obs)
        dataset.models = [model.copy(name="demo-source"),
                          FoVBackgroundModel(dataset_name=dataset.name)]
        sampler = MapDatasetEventSampler(random_state=seed * 10_000 + obs_id)
        events = sampler.run(dataset, obs)
        events.table.meta.update(CREATED=START, OBJECT="OPUS demo source",
                                 ORIGIN="OPUS scripts/make_demo_dl3.py")
        observation = obs.copy(in_memory=True, events=events)
        path = outdir / f"obs_{obs_id}.fits.gz"
        observation.write(path, overwrite=True, include_irfs=True)
        paths.append(path)
    return paths


def write_indexes(outdir: Path, paths: list[Path]) -> None:
    """obs-index and hdu-index tables (GADF), with paths relative to OUTDIR."""
    from gammapy.data import DataStore

    store = DataStore.from_events_files(paths, irfs_paths=paths)
    hdu_table = store.hdu_table.copy()
    hdu_table["FILE_DIR"] = ["."] * len(hdu_table)
    hdu_table["FILE_NAME"] = [Path(name).name for name in hdu_table["FILE_NAME"]]
    hdu_table.meta.pop("BASE_DIR", None)
    # DataStoreMaker guesses a PSF is "psf_3gauss"; ours is a PSF3D table.
    is_psf = hdu_table["HDU_TYPE"] == "psf"
    hdu_table["HDU_CLASS"] = hdu_table["HDU_CLASS"].astype("U16")
    hdu_table["HDU_CLASS"][is_psf] = "psf_table"
    hdu_table["HDU_NAME"][is_psf] = "PSF_2D_TABLE"
    hdu_table.write(outdir / "hdu-index.fits.gz", overwrite=True)
    store.obs_table.write(outdir / "obs-index.fits.gz", overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="directory to write (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)

    from astropy.utils import iers

    iers.conf.auto_download = False  # no network: the IERS tables shipped with astropy do
    warnings.filterwarnings("ignore", module="gammapy")
    started = time.monotonic()
    args.outdir.mkdir(parents=True, exist_ok=True)
    paths = simulate(args.outdir, args.seed)
    write_indexes(args.outdir, paths)
    size = sum(p.stat().st_size for p in args.outdir.iterdir() if p.is_file())
    print(f"wrote {len(paths)} observations to {args.outdir} ({size / 1e6:.2f} MB) "
          f"in {time.monotonic() - started:.1f} s; source at RA={SOURCE_RA} Dec={SOURCE_DEC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
