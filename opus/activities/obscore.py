"""Which ObsCore field of a dataset fills which parameter of an activity, and how.

A form can be opened for a dataset found in an archive (an ObsCore row, IVOA ObsCore 1.1).
The description says which of its parameters a dataset fills, in the standard way: the
PARAM's ``utype`` is the ObsCore data model's utype of the field (ObsCore 1.1, its table of
the fields with their names, units and utypes; e.g. ``obscore:Access.Reference`` for
``access_url``,
``obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1`` for ``s_ra``)::

    <PARAM name="ra" datatype="double" unit="deg" ucd="pos.eq.ra;meta.main"
           utype="obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1" .../>

The reader (:mod:`opus.activities.votable`) refuses an ``obscore:`` utype that is no ObsCore
field, so a typo is an error of the file, not a silently empty form. Nothing about a given
activity is written here: only the ObsCore table, and the conversions any mapping needs:

- a value with a unit is converted from the field's unit (the ``unit`` of the TAP result's
  FIELD, else ObsCore's own) to the PARAM's ``unit``, with astropy's units and
  their spectral equivalence, so ``em_min`` (a wavelength in m) fills an energy in TeV.
  Note the direction: the shortest wavelength, ``em_min``, is the highest energy; a
  description maps ``emax`` from ``em_min`` (its LoLimit utype) and ``emin`` from ``em_max``;
- a ``file:`` URL (an ``access_url`` of a data centre's own disks) fills a parameter that
  is a server path (``xtype="opus:serverpath"``) with its path; the server's check of data
  folders (:mod:`opus.activities.server_paths`) then applies as to any typed value. An
  ``http(s)`` URL does not fill it: the form says why.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from opus.activities.model import FLOAT_DATATYPES, INTEGER_DATATYPES, ActivityDescription
from opus.activities.server_paths import is_server_path

__all__ = ["BY_NAME", "FIELDS", "DatasetValue", "ObsCoreField", "field_of_utype",
           "is_obscore_utype", "prefill"]

UTYPE_PREFIX = "obscore:"


@dataclass(frozen=True)
class ObsCoreField:
    """One column of the ObsCore table (ObsCore 1.1)."""

    name: str
    utype: str
    unit: str | None
    description: str


_C = "Char.SpatialAxis.Coverage."
#: ObsCore 1.1: the mandatory fields and the optional ones a gateway shows.
FIELDS: tuple[ObsCoreField, ...] = tuple(ObsCoreField(*row) for row in (
    ("dataproduct_type", "obscore:ObsDataset.dataProductType", None,
     "Data product (file content) primary type"),
    ("dataproduct_subtype", "obscore:ObsDataset.dataProductSubtype", None,
     "Data product specific type"),
    ("calib_level", "obscore:ObsDataset.calibLevel", None, "Calibration level (0 to 4)"),
    ("obs_collection", "obscore:DataID.Collection", None, "Name of the data collection"),
    ("obs_id", "obscore:DataID.observationID", None, "Observation identifier"),
    ("obs_publisher_did", "obscore:Curation.PublisherDID", None,
     "Dataset identifier given by the publisher"),
    ("obs_creator_did", "obscore:DataID.CreatorDID", None,
     "Dataset identifier given by the creator"),
    ("access_url", "obscore:Access.Reference", None, "URL used to access the dataset"),
    ("access_format", "obscore:Access.Format", None, "File content format (media type)"),
    ("access_estsize", "obscore:Access.Size", "kbyte", "Estimated size of the dataset"),
    ("target_name", "obscore:Target.Name", None, "Astronomical object observed, if any"),
    ("target_class", "obscore:Target.Class", None, "Class of the target"),
    ("s_ra", f"obscore:{_C}Location.Coord.Position2D.Value2.C1", "deg",
     "Central right ascension, ICRS"),
    ("s_dec", f"obscore:{_C}Location.Coord.Position2D.Value2.C2", "deg",
     "Central declination, ICRS"),
    ("s_fov", f"obscore:{_C}Bounds.Extent.diameter", "deg",
     "Diameter (bounds) of the covered region"),
    ("s_region", f"obscore:{_C}Support.Area", None, "Sky region covered by the data product"),
    ("s_resolution", "obscore:Char.SpatialAxis.Resolution.Refval.value", "arcsec",
     "Spatial resolution of data as FWHM"),
    ("t_min", "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StartTime", "d",
     "Start time in MJD"),
    ("t_max", "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StopTime", "d",
     "Stop time in MJD"),
    ("t_exptime", "obscore:Char.TimeAxis.Coverage.Support.Extent", "s",
     "Total exposure time"),
    ("t_resolution", "obscore:Char.TimeAxis.Resolution.Refval.value", "s",
     "Temporal resolution FWHM"),
    ("em_min", "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit", "m",
     "Start in spectral coordinates (vacuum wavelength)"),
    ("em_max", "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit", "m",
     "Stop in spectral coordinates (vacuum wavelength)"),
    ("em_res_power", "obscore:Char.SpectralAxis.Resolution.ResolPower.refVal", None,
     "Spectral resolving power"),
    ("o_ucd", "obscore:Char.ObservableAxis.ucd", None, "UCD of observable"),
    ("facility_name", "obscore:Provenance.ObsConfig.Facility.name", None,
     "Name of the facility used for this observation"),
    ("instrument_name", "obscore:Provenance.ObsConfig.Instrument.name", None,
     "Name of the instrument used for this observation"),
))
_BY_UTYPE = {field.utype.lower(): field for field in FIELDS}
BY_NAME = {field.name: field for field in FIELDS}


def field_of_utype(utype: str | None) -> ObsCoreField | None:
    """The ObsCore field a PARAM's utype names (utypes compare case-insensitively,
    VOTable 1.4 section 3.6), or None."""
    return _BY_UTYPE.get((utype or "").strip().lower())


def is_obscore_utype(utype: str | None) -> bool:
    return (utype or "").strip().lower().startswith(UTYPE_PREFIX)


@dataclass(frozen=True)
class DatasetValue:
    """One field of a dataset: its text and the unit it is in (None: ObsCore's own)."""

    text: str
    unit: str | None = None


def _converted(text: str, from_unit: str | None, to_unit: str | None) -> str:
    """``text`` (a number in ``from_unit``) in ``to_unit``; ValueError if it cannot be."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text!r} is not a finite number")
    if not from_unit or not to_unit or from_unit.strip() == to_unit.strip():
        return f"{number:.15g}"  # all a double holds that people read (22.51, not ...998)
    from astropy import units  # the field's unit library; imported only when needed

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 0 m is an infinite energy
            value = float((number * units.Unit(from_unit)).to(
                units.Unit(to_unit), equivalencies=units.spectral()).value)
    except (ValueError, TypeError, ArithmeticError, units.UnitsError) as exc:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}: {exc}") from exc
    if not math.isfinite(value):
        raise ValueError(f"{text} {from_unit} is no finite value in {to_unit}")
    return f"{value:.15g}"


def _server_path(url: str) -> str:
    """The path of a ``file:`` URL on this host (RFC 8089), or of an absolute path;
    ValueError for anything else (an ``http`` URL is no file of this server)."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() == "file" and parts.netloc in ("", "localhost"):
        return unquote(parts.path)
    if text.startswith("/"):
        return text
    raise ValueError("not a file of this server (a file: URL or an absolute path); "
                     "download it and give its path, or ask the operator")


def prefill(activity: ActivityDescription, dataset: Mapping[str, DatasetValue]
            ) -> tuple[dict[str, str], dict[str, str]]:
    """The form values a dataset gives ``activity`` (by parameter name), and the
    problems met (by parameter name: a field whose value could not be converted)."""
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for parameter in activity.parameters:
        field = field_of_utype(parameter.utype)
        if field is None or field.name not in dataset:
            continue
        given = dataset[field.name]
        if given.text.strip() == "":
            continue
        try:
            if parameter.datatype in FLOAT_DATATYPES | INTEGER_DATATYPES:
                text = _converted(given.text, given.unit or field.unit, parameter.unit)
                if parameter.datatype in INTEGER_DATATYPES:
                    text = str(int(round(float(text))))
            elif is_server_path(parameter):
                text = _server_path(given.text)
            else:
                text = given.text.strip()
        except ValueError as exc:
            problems[parameter.name] = f"{field.name}={given.text!r}: {exc}"
            continue
        values[parameter.name] = text
    return values, problems
