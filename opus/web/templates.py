"""The Jinja2 templates of the web client (``opus/web/templates/``), autoescaped.

Every value put in a template is escaped (HTML text and attribute values alike), unless a
page hands over markup it built with :func:`opus.web.html.esc` itself, as
:class:`markupsafe.Markup` (the generated activity form). Undefined names are errors, not
empty strings, so a template cannot silently lose a value.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

__all__ = ["Markup", "STATIC_DIR", "render"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def size_text(size: int | None) -> str:
    """A byte count as people read it: 1.2 MB (decimal units), 512 B."""
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def when_text(value: dt.datetime | None) -> str:
    """A stored (naive UTC) instant, to the second."""
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: dt.datetime | None) -> str:
    """A stored instant for ``<time datetime>`` and scripts."""
    return "" if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{value.microsecond // 1000:03d}Z"


def duration_text(seconds: float | None) -> str:
    """Seconds as ``2 h 03 min``, ``4 min 05 s`` or ``12 s``."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def web_url(url: str | None) -> str | None:
    """``url`` if it is an http(s) link (a description's docurl), else None: no
    ``javascript:`` link from a description file."""
    if not url:
        return None
    return url if urlsplit(url.strip()).scheme.lower() in {"http", "https"} else None


_ENVIRONMENT = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENVIRONMENT.filters.update(size=size_text, when=when_text, iso=iso,
                            duration=duration_text, web_url=web_url)


def render(name: str, **context: Any) -> str:
    """The template ``name`` filled with ``context``."""
    return _ENVIRONMENT.get_template(name).render(**context)
