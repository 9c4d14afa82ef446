"""``/tap/examples``: the DALI 1.1 (section 2.3) examples document of ProvTAP, the use
cases of the CTA data-access plan as ADQL queries.

An XHTML document with RDFa 1.1 Lite: each example is an element with ``typeof="example"``,
an ``id`` and ``resource="#id"``, its title ``property="name"`` and its query
``property="query"`` (TAP 1.1 section 2.5, TAPNotes examples). TOPCAT lists them in its TAP
window; taplint's EXA stage checks the markup and runs the queries.
"""

from __future__ import annotations

from html import escape

_RUN = ("FROM provenance.entity AS ent\n"
        "JOIN provenance.wasgeneratedby AS gen ON gen.entity_id = ent.id\n"
        "JOIN provenance.activity AS act ON act.id = gen.activity_id\n")

#: (id, title, what it answers, the ADQL query).
EXAMPLES: list[tuple[str, str, str, str]] = [
    ("by-pipeline-version", "Data produced by a given version of the pipeline",
     "Products of the runs of gammapy_maps version 1.0 (its ActivityDescription).",
     f"SELECT ent.id, ent.name, ent.location, act.end_time AS run_end\n{_RUN}"
     "WHERE act.activity_description_id = 'gammapy_maps/1.0'\n"
     "ORDER BY run_end DESC"),
    ("by-target", "Data produced for a given target",
     "Products of the runs at the Crab's position (parameters ra, dec, as given to the "
     "job: parameter values are text).",
     "SELECT ent.id, ent.name, ra.param_value AS ra, decl.param_value AS decl\n"
     f"{_RUN}"
     "JOIN provenance.parameter AS ra ON ra.activity_id = act.id AND ra.name = 'ra'\n"
     "JOIN provenance.parameter AS decl ON decl.activity_id = act.id "
     "AND decl.name = 'dec'\n"
     "WHERE act.name = 'gammapy_maps'\n"
     "AND ra.param_value = '83.63' AND decl.param_value = '22.01'"),
    ("by-method", "Data produced using a given background method",
     "Products of the runs of gammapy_maps with background_method = fov.",
     f"SELECT ent.id, ent.name, act.end_time\n{_RUN}"
     "JOIN provenance.parameter AS par ON par.activity_id = act.id\n"
     "WHERE par.name = 'background_method' AND par.param_value = 'fov'"),
    ("inputs-of-an-entity", "What a product was made from",
     "The entities a product derives from (one generation; repeat for more).",
     "SELECT der.used_entity_id, src.name, src.location\n"
     "FROM provenance.wasderivedfrom AS der\n"
     "JOIN provenance.entity AS src ON src.id = der.used_entity_id\n"
     "WHERE der.generated_entity_id = 'ent-00000000-0000-0000-0000-000000000000'"),
    ("runs-per-activity", "How many runs of each activity, and how they ended",
     "A count of the runs by activity and final phase.",
     "SELECT name, phase, COUNT(*) AS runs FROM provenance.activity\n"
     "GROUP BY name, phase ORDER BY name, phase"),
]


def examples_document(tap_url: str) -> bytes:
    """The XHTML examples document."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n'
             '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">\n'
             '<head><title>ProvTAP examples</title></head>\n'
             f'<body vocab="http://www.ivoa.net/rdf/examples#">\n'
             f'<h1>ProvTAP examples (<a href="{escape(tap_url)}">{escape(tap_url)}</a>)</h1>\n']
    for identifier, title, text, query in EXAMPLES:
        parts.append(f'<div typeof="example" id="{identifier}" resource="#{identifier}">\n'
                     f'<h2 property="name">{escape(title)}</h2>\n<p>{escape(text)}</p>\n'
                     f'<pre property="query">{escape(query)}</pre>\n</div>\n')
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode()
