"""Pictures of a provenance :class:`Graph`: graphviz DOT text, and SVG/PNG made by graphviz.

The drawing follows the W3C PROV conventions (PROV-DM / ProvToolbox ``prov-dot``), which
ProvenanceDM 1.0 reuses for its core classes (section 2.2 Entity and Activity, 2.3
Entity-Activity relations, 2.4 Agent and relations to Agent): entities are yellow ellipses,
activities blue rectangles, agents orange houses; arrows point from the later node to the
earlier one (``used``, ``wasGeneratedBy``, ``wasDerivedFrom``, section 2.3.4) or to the
responsible agent (``wasAssociatedWith``, ``wasAttributedTo``), labelled with the relation
and its role.

All text put in the DOT (ids, labels, tooltips) goes through :func:`quote`, so a name holding
``"]; evil [label="x`` stays one label. :func:`render` runs graphviz with an argv list
(never a shell), the DOT on stdin and a time limit. A big graph (more than ``large`` nodes),
or one ``dot`` fails on or cannot lay out in time, is laid out again by ``sfdp
-Goverlap=scale -Gsplines=false`` (force-directed, straight edges), with a time limit of its
own, so the worst case is about twice ``timeout``. Measured with graphviz 2.43 here:

- 2000-node chain (1000 entities, 1000 activities, labelled edges): the fallback takes 0.4 s
  for SVG and 0.9 s for PNG (``dot`` alone 0.3 to 1.4 s);
- 2000-node DAG (500 activities each using 3 earlier entities and making 3): the fallback
  0.9 s (SVG) and 2.2 s (PNG); ``dot`` and ``dot -Gnslimit=2 -Gmclimit=0.5 -Gsplines=line``
  do not finish in 60 s, ``neato -Goverlap=false`` 59 s, ``sfdp -Goverlap=false`` 2 to 6 s
  (SVG) and up to 22 s (PNG).

A child that overruns is killed with its whole process group (it runs in a session of its
own) and reaped: killing only the child would leave a grandchild holding the output pipes,
and the wait for them would hang.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import Literal

from opus.provenance.graph import Graph

ENTITY_STYLE = {"shape": "ellipse", "style": "filled", "fillcolor": "#FFFC87",
                "color": "#808080"}
ACTIVITY_STYLE = {"shape": "box", "style": "filled", "fillcolor": "#9FB1FC",
                  "color": "#0000FF"}
AGENT_STYLE = {"shape": "house", "style": "filled", "fillcolor": "#FED37F", "color": "#808080"}
AGENT_EDGE = {"color": "#FED37F", "fontcolor": "#B07C00"}

DOT_PROGRAM = ["dot"]
FALLBACK_PROGRAM = ["sfdp", "-Goverlap=scale", "-Gsplines=false"]
# A cap on the drawing of a big graph as a bitmap (inches, at graphviz's 96 dpi).
FALLBACK_PNG_SIZE = "-Gsize=50,50"

# C0 controls other than tab and newline: SVG (XML) cannot carry them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
# A node statement of any DOT text: a (quoted or plain) id followed by its attribute list.
_NODE_STATEMENT = re.compile(r'^\s*(?:"(?:[^"\\]|\\.)*"|(?!(?:node|edge|graph)\b)\w+)\s*\[',
                             re.MULTILINE)


class RenderError(Exception):
    """Graphviz could not draw the graph (not installed, failed, or ran out of time)."""


def quote(text: object) -> str:
    """``text`` as a DOT double-quoted string, shown literally as a label.

    Backslashes are doubled (a label would read ``\\n``, ``\\N``, ``\\G`` ... as escapes),
    quotes escaped, ``&`` written ``&amp;`` (graphviz decodes HTML entities in labels), line
    ends become ``\\n`` and other control characters U+FFFD. ``<`` and ``>`` need nothing in
    a quoted string (graphviz escapes them in SVG).
    """
    value = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    value = _CONTROL.sub("\ufffd", value)
    value = value.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return '"' + value.replace("\n", "\\n") + '"'


def _attributes(attributes: Mapping[str, object]) -> str:
    return ", ".join(f"{quote(key)}={quote(value)}" for key, value in attributes.items())


def _short(local_id: str, keep: int = 12) -> str:
    return local_id if len(local_id) <= keep + 4 else local_id[:keep] + "\u2026"


def graph_to_dot(graph: Graph, namespace: str,
                 node_url: Callable[[str], str] | None = None) -> str:
    """``graph`` as DOT text; nodes are ``opus:<local id>``, labelled name and short id.

    With ``node_url`` (local id -> URL) every node is a link (graphviz ``URL``, opened in
    the top window when the SVG is embedded in a page)."""
    graph_attributes = {"rankdir": "BT", "charset": "UTF-8", "comment": namespace}
    lines = [f"digraph {quote('provenance')} {{",
             f"  graph [{_attributes(graph_attributes)}];",
             f"  node [{_attributes({'fontname': 'Helvetica', 'fontsize': '10'})}];",
             f"  edge [{_attributes({'fontname': 'Helvetica', 'fontsize': '8'})}];"]

    def node(local_id: str, name: object, style: dict[str, str]) -> None:
        label = f"{name or local_id}\nopus:{_short(local_id)}"
        attributes = {**style, "label": label, "tooltip": f"opus:{local_id}"}
        if node_url is not None:
            attributes.update(URL=node_url(local_id), target="_top")
        lines.append(f"  {quote('opus:' + local_id)} [{_attributes(attributes)}];")

    def edge(source: str, target: str, relation: str, role: str = "",
             extra: dict[str, str] | None = None) -> None:
        label = f"{relation}\n({role})" if role else relation
        attributes = {"label": label, **(extra or {})}
        lines.append(f"  {quote('opus:' + source)} -> {quote('opus:' + target)} "
                     f"[{_attributes(attributes)}];")

    for key in sorted(graph.entities):
        node(key, graph.entities[key].get("name"), ENTITY_STYLE)
    for key in sorted(graph.activities):
        node(key, graph.activities[key].get("name"), ACTIVITY_STYLE)
    for key in sorted(graph.agents):
        node(key, graph.agents[key].get("name"), AGENT_STYLE)
    for activity, entity, role in sorted(graph.used):
        edge(activity, entity, "used", role)
    for entity, activity, role in sorted(graph.generated):
        edge(entity, activity, "wasGeneratedBy", role)
    for activity, agent, role in sorted(graph.associated):
        edge(activity, agent, "wasAssociatedWith", role, AGENT_EDGE)
    for entity, agent, role in sorted(graph.attributed):
        edge(entity, agent, "wasAttributedTo", role, AGENT_EDGE)
    for generated, used, _activity in sorted(graph.derived):
        edge(generated, used, "wasDerivedFrom", "", {"style": "dashed"})
    lines.append("}")
    return "\n".join(lines) + "\n"


def count_nodes(dot_text: str) -> int:
    """Node statements in ``dot_text`` (one per line, as :func:`graph_to_dot` writes them)."""
    return len(_NODE_STATEMENT.findall(dot_text))


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group (it leads one) and reap the child."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.communicate()


def _run(argv: list[str], dot_text: str, timeout: float) -> bytes:
    """Run graphviz on ``dot_text``; the child is killed and reaped if it overruns."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError as error:
        raise RenderError(f"cannot run {argv[0]} (Debian package graphviz): {error}") from None
    try:
        out, err = process.communicate(dot_text.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise RenderError(f"{argv[0]} did not finish in {timeout:g} s") from None
    except BaseException:
        _kill(process)
        raise
    if process.returncode != 0 or not out:
        message = err.decode("utf-8", "replace").strip().splitlines()
        raise RenderError(f"{argv[0]} failed (exit {process.returncode}): "
                          f"{message[-1] if message else 'no output'}")
    return out


def render(dot_text: str, fmt: Literal["svg", "png"], *, timeout: float = 10.0,
           large: int = 300) -> bytes:
    """``dot_text`` drawn as SVG or PNG bytes, by ``dot``, else by the cheaper fallback.

    Graphs of more than ``large`` nodes go straight to the fallback layout; a ``dot`` that
    overruns ``timeout`` or fails is followed by the fallback, with a time limit of its own.
    Raises :class:`RenderError` when neither gives a picture.
    """
    if fmt not in ("svg", "png"):
        raise ValueError(f"unsupported picture format {fmt!r}")
    problems = []
    if count_nodes(dot_text) <= large:
        try:
            return _run([*DOT_PROGRAM, f"-T{fmt}"], dot_text, timeout)
        except RenderError as error:
            problems.append(str(error))
    fallback = [*FALLBACK_PROGRAM, *([FALLBACK_PNG_SIZE] if fmt == "png" else []), f"-T{fmt}"]
    try:
        return _run(fallback, dot_text, timeout)
    except RenderError as error:
        problems.append(str(error))
    raise RenderError("graph could not be drawn: " + "; ".join(problems))
