"""Small HTML pages without a template engine: every interpolated text goes through
:func:`esc` (``html.escape`` with quotes), so nothing from a description or a request can
become markup."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

HTML = "text/html; charset=UTF-8"

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.4}
label{font-weight:600;display:block;margin-top:1rem}
.help{display:block;color:#555;font-size:.9em}
.unit{color:#555;margin-left:.3rem}
.error{border:1px solid #b00;background:#fee;color:#700;padding:.5rem 1rem}
fieldset{margin-top:1.5rem}
details{margin-top:1.5rem}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}
"""


def esc(value: object) -> str:
    """``value`` as HTML text or attribute content (quotes escaped too)."""
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str) -> str:
    """A complete HTML5 page; ``title`` is escaped here, ``body`` must already be HTML."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def activity_list(entries: Iterable[Mapping[str, object]]) -> str:
    """The ``/activities`` page: one row per activity with its links (see
    :func:`opus.web.discovery.activity_entry` for the keys of an entry)."""
    rows = []
    for entry in entries:
        links = entry["links"]
        assert isinstance(links, Mapping)
        link_html = " · ".join(
            f'<a href="{esc(links[key])}">{esc(label)}</a>'
            for key, label in (("form", "form"), ("jobs", "jobs"),
                               ("description", "description"), ("datalink", "DataLink")))
        rows.append(f"<tr><td><a href=\"{esc(links['form'])}\">{esc(entry['name'])}</a></td>"
                    f"<td>{esc(entry.get('version') or '')}</td>"
                    f"<td>{esc(entry.get('description') or '')}</td><td>{link_html}</td></tr>")
    table = ("<table>\n<thead><tr><th>activity</th><th>version</th><th>description</th>"
             "<th>links</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>")
    return page("OPUS activities", f"<h1>OPUS activities</h1>\n{table}")
