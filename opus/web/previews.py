"""What the job page shows of a result file, each preview bounded in what it reads.

- images (PNG, JPEG, GIF, WebP, SVG) are shown inline by the browser, from the result's
  own URL (``<img>``: an SVG's scripts do not run there); nothing is read here;
- text (``text/*``, XML, PROV-N...) is previewed from its first :data:`TEXT_LIMIT` bytes;
  JSON is pretty-printed when the whole file is at most :data:`JSON_LIMIT` bytes, else
  shown as text;
- FITS files get a summary of their headers, read with ``astropy.io.fits`` (lazily, the
  data never loaded, the first :data:`FITS_HDUS` HDUs, a compressed file only up to
  :data:`FITS_GZIP_LIMIT` bytes);
- logs (stdout, stderr) show their last :data:`LOG_LIMIT` bytes.

Everything stays downloadable whatever its preview; a file that cannot be previewed (binary,
unreadable, astropy missing) says so rather than failing the page.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT_LIMIT = 32 * 1024
JSON_LIMIT = 256 * 1024
LOG_LIMIT = 16 * 1024
FITS_HDUS = 10
#: Header cards of one HDU kept for its full listing.
FITS_CARDS = 200
FITS_GZIP_LIMIT = 200 * 1024 * 1024
#: Keywords picked out of each HDU header for the summary table.
FITS_KEYWORDS = ("OBJECT", "TELESCOP", "INSTRUME", "DATE-OBS", "BUNIT", "CTYPE1", "CTYPE2",
                 "CTYPE3", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2", "EQUINOX", "RADESYS")
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp",
                         "image/svg+xml"})
FITS_TYPES = frozenset({"application/fits", "image/fits", "application/x-fits"})
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")


@dataclass(frozen=True)
class Hdu:
    """The summary of one FITS HDU."""

    index: int
    name: str
    kind: str
    dimensions: str
    bitpix: Any
    keywords: tuple[tuple[str, str], ...]
    cards: str
    cards_truncated: bool


@dataclass(frozen=True)
class Preview:
    """``kind``: image, json, text, fits or none; ``problem`` says why there is none."""

    kind: str
    text: str = ""
    truncated: bool = False
    hdus: tuple[Hdu, ...] = field(default=())
    more_hdus: bool = False
    problem: str | None = None


def _base_type(mime: str | None) -> str:
    return (mime or "").split(";", 1)[0].strip().lower()


def is_text_type(mime: str) -> bool:
    return (mime.startswith("text/") or mime.endswith(("+xml", "/xml"))
            or mime in {"application/x-votable+xml", "application/x-yaml"})


def is_json_type(mime: str) -> bool:
    return mime == "application/json" or mime.endswith("+json")


def preview(path: Path, mime: str | None) -> Preview:
    """The preview of the result file at ``path`` of media type ``mime``."""
    base = _base_type(mime)
    if base in IMAGE_TYPES:
        return Preview("image")
    try:
        if base in FITS_TYPES or path.name.lower().endswith(FITS_SUFFIXES):
            return fits_summary(path)
        with open(path, "rb") as stream:
            head = stream.read(max(TEXT_LIMIT, JSON_LIMIT) + 1)
    except OSError as error:
        return Preview("none", problem=f"the file cannot be read: {error.strerror}")
    if head.startswith(b"SIMPLE  ="):
        return fits_summary(path)
    if is_json_type(base) and len(head) <= JSON_LIMIT:
        try:
            shown = json.dumps(json.loads(head), indent=2, ensure_ascii=False)
        except ValueError:
            pass
        else:
            return Preview("json", shown[:TEXT_LIMIT], len(shown) > TEXT_LIMIT)
    if is_json_type(base) or is_text_type(base) or not base:
        if b"\x00" in head[:TEXT_LIMIT]:
            return Preview("none", problem="binary content: no preview")
        return Preview("text", head[:TEXT_LIMIT].decode("utf-8", "replace"),
                       len(head) > TEXT_LIMIT)
    return Preview("none", problem=f"no preview for {base or 'this type'}")


def log_tail(path: Path, limit: int = LOG_LIMIT) -> tuple[str, bool]:
    """The last ``limit`` bytes of a log as text, and whether it was cut."""
    with open(path, "rb") as stream:
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(max(0, size - limit))
        data = stream.read(limit)
    return data.decode("utf-8", "replace"), size > limit


def fits_summary(path: Path) -> Preview:
    """The headers of the first :data:`FITS_HDUS` HDUs of a FITS file (data not read)."""
    try:
        from astropy.io import fits
    except ImportError:
        return Preview("none", problem="no FITS summary (astropy is not installed)")
    if path.name.lower().endswith(".gz") and path.stat().st_size > FITS_GZIP_LIMIT:
        return Preview("none", problem="compressed FITS file too large to summarise")
    hdus = []
    more = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-standard cards: summarised as they are
            with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
                for index in range(FITS_HDUS + 1):
                    try:
                        hdu = hdul[index]
                    except IndexError:
                        break
                    if index == FITS_HDUS:
                        more = True
                        break
                    hdus.append(_hdu(index, hdu))
    except Exception as error:  # any reason: truncated file, not FITS after all...
        return Preview("none", problem=f"the FITS headers cannot be read: {error}")
    return Preview("fits", hdus=tuple(hdus), more_hdus=more)


def _hdu(index: int, hdu: Any) -> Hdu:
    header = hdu.header
    naxis = int(header.get("NAXIS", 0) or 0)
    dimensions = " × ".join(str(header.get(f"NAXIS{i}", "?")) for i in range(1, naxis + 1))
    if header.get("XTENSION") == "BINTABLE":
        dimensions = f"{header.get('NAXIS2', '?')} rows × {header.get('TFIELDS', '?')} columns"
    keywords = tuple((key, str(header[key])) for key in FITS_KEYWORDS if key in header)
    cards = [str(card).rstrip() for card in header.cards[:FITS_CARDS]]
    return Hdu(index=index, name=str(hdu.name or ""), kind=type(hdu).__name__,
               dimensions=dimensions or "no data", bitpix=header.get("BITPIX"),
               keywords=keywords, cards="\n".join(cards),
               cards_truncated=len(header.cards) > FITS_CARDS)
