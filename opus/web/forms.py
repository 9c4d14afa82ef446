"""The HTML form of an activity, generated from its description, and what a posted form means.

One input per ParameterDescription (ProvenanceDM 1.0 section 2.6.2; its valueType follows
VOTable 1.3 section 4.1 and its limits the ``VALUES`` element, section 4.6):

============================  ================================================================
parameter                     input
============================  ================================================================
OPTIONs                       ``<select>`` of the options
boolean                       ``<input type="checkbox" value="true">``; unchecked is sent as
                              nothing, and :func:`form_parameters` turns that into ``false``
integer scalar                ``type="number" step="1"`` with ``min`` / ``max`` (exclusive
                              bounds moved by one; else the datatype's range)
float scalar                  ``type="number" step="any"`` with inclusive ``min`` / ``max``
xtype or utype says URL       ``type="url"``
used entity (UsageDescription) ``type="file"`` beside a text field for a URL or the
                              identifier of an earlier result
anything else (text, arrays)  ``type="text"`` (``maxlength`` for a bounded char arraysize)
============================  ================================================================

Defaults are pre-filled, units shown beside the input, the DESCRIPTION is the help text,
parameters without default are ``required`` and the optional ones are folded in a
``<details>`` element. The UWS control fields RUNID, EXECUTIONDURATION and a "run now"
checkbox (PHASE=RUN) close the form. Every text from the description or the request is
escaped with :func:`opus.web.html.esc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opus.activities.model import (
    BOOLEAN_DATATYPES,
    FLOAT_DATATYPES,
    INTEGER_DATATYPES,
    ActivityDescription,
    EntityDescription,
    ParameterDescription,
)
from opus.activities.validation import INTEGER_RANGES, parse_arraysize
from opus.web.html import esc, page

__all__ = ["FILE_XTYPE", "field_id", "form_element", "form_parameters", "input_kind", "render_form"]

FILE_XTYPE = "application/octet-stream"
#: Control fields of the form, sent only when filled (UWS 1.1 section 2.2.3.1).
CONTROL_FIELDS = ("RUNID", "EXECUTIONDURATION", "PHASE")


def _is_scalar(p: ParameterDescription) -> bool:
    try:
        size = parse_arraysize(p.arraysize)
    except ValueError:
        return False
    return size is None or size == (1, True)


def input_kind(p: ParameterDescription) -> str:
    """The form control of a parameter: select, checkbox, number, url, file or text."""
    xtype, utype = (p.xtype or "").lower(), (p.utype or "").lower()
    if p.options:
        return "select"
    if xtype == FILE_XTYPE:
        return "file"
    if p.datatype in BOOLEAN_DATATYPES and _is_scalar(p):
        return "checkbox"
    if p.datatype in INTEGER_DATATYPES | FLOAT_DATATYPES and _is_scalar(p):
        return "number"
    if xtype in {"url", "uri", "anyuri"} or utype.rsplit(".", 1)[-1].endswith(("url", "uri")):
        return "url"
    return "text"


def _number_attributes(p: ParameterDescription) -> str:
    if p.datatype in FLOAT_DATATYPES:
        attributes = ' step="any"'
        if p.minimum is not None and p.minimum_inclusive:
            attributes += f' min="{esc(p.minimum)}"'
        if p.maximum is not None and p.maximum_inclusive:
            attributes += f' max="{esc(p.maximum)}"'
        return attributes
    low, high = INTEGER_RANGES[p.datatype]
    if p.minimum is not None:
        low = int(p.minimum) + (0 if p.minimum_inclusive else 1)
    if p.maximum is not None:
        high = int(p.maximum) - (0 if p.maximum_inclusive else 1)
    return f' step="1" min="{low}" max="{high}"'


def _limits_text(p: ParameterDescription) -> str:
    parts = []
    if p.minimum is not None:
        parts.append(f"{'≥' if p.minimum_inclusive else '>'} {p.minimum}")
    if p.maximum is not None:
        parts.append(f"{'≤' if p.maximum_inclusive else '<'} {p.maximum}")
    return ", ".join(parts)


def _field_error(ident: str, message: str | None) -> str:
    """The message about one field, shown beside it (referenced by its aria-describedby)."""
    if not message:
        return ""
    return f'<span class="field-error" id="{esc(ident)}-error">{esc(message)}</span>'


def _described_by(ident: str, message: str | None) -> str:
    ids = f"{ident}-error {ident}-help" if message else f"{ident}-help"
    return f'aria-describedby="{esc(ids)}"'


def _field(p: ParameterDescription, value: str | None, invalid: bool,
           message: str | None = None) -> str:
    """One labelled input with its unit and help text (and ``message``, when the value was
    refused)."""
    kind = input_kind(p)
    ident = f"p-{p.name}"
    help_parts = [p.description or ""]
    limits = _limits_text(p)
    if limits:
        help_parts.append(f"({limits})")
    if kind == "text" and p.datatype not in ("char", "unicodeChar"):
        help_parts.append(f"(space-separated {p.datatype} values)")
    if kind == "file":
        # Files reach an activity as used entities (the "Inputs" above); a file-typed
        # PARAM has no way in yet.
        help_parts.append("File uploads are not accepted yet for a parameter.")
    help_text = " ".join(part for part in help_parts if part)
    message = message if invalid else None
    common = f'id="{esc(ident)}" name="{esc(p.name)}" {_described_by(ident, message)}'
    if invalid:
        common += ' aria-invalid="true"'
    required = " required" if p.required and kind != "checkbox" else ""
    current = value if value is not None else (p.default or "")

    if kind == "select":
        options = [] if not p.required else ['<option value="">(choose)</option>']
        for option in p.options:
            selected = " selected" if option.value == current else ""
            label = option.name or option.value
            options.append(f'<option value="{esc(option.value)}"{selected}>{esc(label)}</option>')
        control = f"<select {common}{required}>" + "".join(options) + "</select>"
    elif kind == "checkbox":
        checked = " checked" if current.strip().lower() in ("true", "1", "yes") else ""
        control = f'<input type="checkbox" {common} value="true"{checked}>'
    elif kind == "file":
        control = f'<input type="file" {common}>'
    else:
        extra = _number_attributes(p) if kind == "number" else ""
        if kind == "text" and p.datatype in ("char", "unicodeChar"):
            size = parse_arraysize(p.arraysize)
            if size is not None and size[0] is not None:
                extra += f' maxlength="{size[0]}"'
        control = f'<input type="{kind}" {common} value="{esc(current)}"{extra}{required}>'
    unit = f'<span class="unit">{esc(p.unit)}</span>' if p.unit else ""
    mark = " *" if required else ""
    return (f'<div class="field"><label for="{esc(ident)}">{esc(p.name)}{mark}</label>'
            f'{_field_error(ident, message)}{control}{unit}'
            f'<span class="help" id="{esc(ident)}-help">{esc(help_text)}</span></div>')


def render_form(activity: ActivityDescription, action: str,
                values: Mapping[str, str] | None = None, error: str | None = None,
                invalid: str | None = None,
                dataset: Sequence[tuple[str, str, str, str]] = ()) -> str:
    """The form page of ``activity`` posting to ``action``.

    ``values`` are the user's previous values (by parameter name, and the control fields
    RUNID, EXECUTIONDURATION, PHASE); without them the defaults are shown and "run now" is
    checked. ``error`` is shown above the form and beside the field ``invalid`` names.
    ``dataset`` (name, value, unit, description of each ObsCore field) is the dataset the
    form was opened for (:mod:`opus.web.dataset_forms`), shown after the form.
    """
    parts = [f"<h1>{esc(activity.name)}</h1>"]
    if activity.description:
        parts.append(f'<p class="description">{esc(activity.description)}</p>')
    if activity.docurl:
        parts.append(f'<p><a href="{esc(activity.docurl)}">Documentation</a></p>')
    if error:
        parts.append(f'<p class="error" role="alert">{esc(error)}</p>')
    parts.append(form_element(activity, action, values, error, invalid))
    if dataset:
        rows = "".join(f'<tr><th scope="row" title="{esc(description)}">{esc(name)}</th>'
                       f"<td>{esc(value)} {esc(unit)}</td></tr>"
                       for name, value, unit, description in dataset)
        parts.append(f'<section id="dataset"><h2>The dataset</h2><table>{rows}</table>'
                     "</section>")
    return page(f"OPUS: {activity.name}", "\n".join(parts))


def form_element(activity: ActivityDescription, action: str,
                 values: Mapping[str, str] | None = None, error: str | None = None,
                 invalid: str | None = None, hidden: Mapping[str, str] | None = None) -> str:
    """The ``<form>`` of :func:`render_form` alone (the web client's activity page puts it
    in its own layout), with ``hidden`` fields (the session's CSRF token)."""
    first = values is None
    values = {key.lower(): value for key, value in (values or {}).items()}
    invalid = (invalid or "").lower()

    def field(p: ParameterDescription) -> str:
        value = values.get(p.name.lower())
        if value is None and not first and input_kind(p) == "checkbox":
            value = "false"  # an unchecked box sends nothing
        return _field(p, value, invalid == p.name.lower(), error)

    required = [field(p) for p in activity.parameters if p.required]
    optional = [field(p) for p in activity.parameters if not p.required]
    has_file = bool(activity.used) or any(input_kind(p) == "file"
                                          for p in activity.parameters)
    enctype = ' enctype="multipart/form-data"' if has_file else ""

    parts = [f'<form method="post" action="{esc(action)}"{enctype}>']
    parts += [f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'
              for name, value in (hidden or {}).items()]
    parts += [_input_field(entity, values.get(entity.name.lower()),
                           invalid == entity.name.lower(), error)
              for entity in activity.used]
    parts += required
    if optional:
        # Open when something in it needs the user's eyes: a refused value, or values that
        # are not the defaults (a form filled again, or from an earlier job).
        shown = any(p.name.lower() == invalid or (
            values.get(p.name.lower()) not in (None, p.default or "")
            and not (input_kind(p) == "checkbox" and (p.default or "false").lower()
                     == (values.get(p.name.lower()) or "").lower()))
            for p in activity.parameters if not p.required)
        parts.append(f"<details{' open' if shown else ''}><summary>Optional parameters"
                     "</summary>")
        parts += optional
        parts.append("</details>")

    run_checked = " checked" if first or values.get("phase", "").upper() == "RUN" else ""
    duration_hint = activity.execution_duration if activity.execution_duration else ""
    runid_error = error if invalid == "runid" else None
    duration_error = error if invalid == "executionduration" else None
    parts.append(
        "<fieldset><legend>Job control</legend>"
        '<div class="field"><label for="c-runid">RUNID</label>'
        f'{_field_error("c-runid", runid_error)}'
        f'<input type="text" id="c-runid" name="RUNID" maxlength="255" '
        f'{_described_by("c-runid", runid_error)} '
        f'value="{esc(values.get("runid", ""))}">'
        '<span class="help" id="c-runid-help">A label of your choice for the job.</span></div>'
        '<div class="field"><label for="c-duration">EXECUTIONDURATION</label>'
        f'{_field_error("c-duration", duration_error)}'
        f'<input type="number" id="c-duration" name="EXECUTIONDURATION" min="0" step="1" '
        f'{_described_by("c-duration", duration_error)} placeholder="{esc(duration_hint)}" '
        f'value="{esc(values.get("executionduration", ""))}"><span class="unit">s</span>'
        '<span class="help" id="c-duration-help">Longest run time; empty for the '
        'activity\'s default.</span></div>'
        '<div class="field"><label><input type="checkbox" name="PHASE" value="RUN"'
        f"{run_checked}> run now</label></div>"
        "</fieldset>")
    parts.append('<p><button type="submit">Create job</button></p></form>')
    return "\n".join(parts)


def _input_field(entity: EntityDescription, value: str | None, invalid: bool,
                 message: str | None = None) -> str:
    """A used entity (ProvenanceDM UsageDescription): a file to upload, or a URL or the
    identifier of an earlier result typed in the same-named text field."""
    ident = f"i-{entity.name}"
    message = message if invalid else None
    marker = (' aria-invalid="true"' if invalid else "") + " " + _described_by(ident, message)
    kind = f" ({esc(entity.content_type)})" if entity.content_type else ""
    return (
        f'<div class="field"><label for="{esc(ident)}">{esc(entity.name)}</label>'
        f'{_field_error(ident, message)}'
        f'<input type="file" id="{esc(ident)}" name="{esc(entity.name)}"{marker}>'
        f'<label class="sub" for="{esc(ident)}-ref">or a URL, or the identifier of an '
        f'earlier result</label>'
        f'<input type="text" id="{esc(ident)}-ref" name="{esc(entity.name)}" '
        f'value="{esc(value or "")}" placeholder="https://... or opus:ent-..."{marker}>'
        f'<span class="help" id="{esc(ident)}-help">{esc(entity.description or "")}{kind}'
        f'</span></div>')


def field_id(activity: ActivityDescription, name: str | None) -> str | None:
    """The id of the input a parameter error names (None: no field of the form)."""
    if not name:
        return None
    wanted = name.lower()
    controls = {"runid": "c-runid", "executionduration": "c-duration"}
    if wanted in controls:
        return controls[wanted]
    for entity in activity.used:
        if entity.name.lower() == wanted:
            return f"i-{entity.name}"
    parameter = activity.parameter(name)
    return f"p-{parameter.name}" if parameter is not None else None


def form_parameters(activity: ActivityDescription, items: Sequence[tuple[str, str]],
                    files: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The (name, value) pairs a posted form stands for, ready for ``JobService.create``.

    Empty control fields and empty input fields are dropped (they mean "the default" or
    "not given here"), the text field of an input whose file was uploaded (``files``) is
    dropped, and every boolean parameter whose checkbox was not sent becomes ``false``.
    """
    inputs = {entity.name.lower() for entity in activity.used}
    uploaded = {name.lower() for name in files}
    result = [(name, value) for name, value in items
              if not (name.upper() in CONTROL_FIELDS and value.strip() == "")
              and not (name.lower() in inputs and (not value.strip()
                                                   or name.lower() in uploaded))]
    sent = {name.lower() for name, _ in result}
    for p in activity.parameters:
        if input_kind(p) == "checkbox" and p.name.lower() not in sent:
            result.append((p.name, "false"))
    return result
