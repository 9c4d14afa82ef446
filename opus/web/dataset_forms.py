"""Forms and service descriptors opened for a dataset (issue 14: OPUS in a science gateway).

``GET /ui/activities/{name}?obs_publisher_did=...`` (or ``?access_url=...&s_ra=...``, the
ObsCore fields a DataLink client passes) shows the activity's form prefilled with what the
dataset gives the parameters its description maps (:mod:`opus.activities.obscore`), the
dataset's fields beside it; ``GET /activities/{name}/datalink`` with the same query gives
the service descriptor with those values in its input PARAMs (DataLink 1.1 section 4.3:
``value`` is what the client sends unless the user changes it). The dataset itself is
found by :mod:`opus.datalink.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass

from opus.activities.model import ActivityDescription
from opus.activities.obscore import BY_NAME, prefill
from opus.config import Settings
from opus.datalink.datasets import DID_FIELD, Dataset, ObsCoreResolver, requested_dataset
from opus.web.openapi_schemas import query_param

__all__ = ["DATASET_PARAMETERS", "DatasetForm", "dataset_form", "names_a_dataset"]

#: The query parameters of a route that opens for a dataset (for the OpenAPI document).
DATASET_PARAMETERS = (
    query_param(DID_FIELD, {"type": "string"}, "an ObsCore dataset, resolved through the "
                "ObsCore TAP service of the settings (obscore_tap_url); or pass the "
                "dataset's ObsCore fields instead (access_url, s_ra, s_dec, t_min, t_max, "
                "em_min, em_max, obs_id, ... in ObsCore 1.1 units)"),
    query_param("ID", {"type": "string"}, "the same as obs_publisher_did, as a DataLink "
                "request names a dataset"),
    query_param("access_url", {"type": "string"}, "the dataset's ObsCore access_url"),
)


@dataclass(frozen=True)
class DatasetForm:
    """What a dataset gives a form: the values, the refused fields, the dataset."""

    values: dict[str, str]
    problems: dict[str, str]
    dataset: Dataset
    #: What the form shows: the defaults, the dataset's values, and "run now" checked.
    form: dict[str, str]


def names_a_dataset(items: list[tuple[str, str]]) -> bool:
    return any(key.strip().lower() in BY_NAME or key.strip().lower() == "id"
               for key, _ in items)


def dataset_form(activity: ActivityDescription, items: list[tuple[str, str]],
                 settings: Settings) -> DatasetForm | None:
    """The prefilled values of ``activity`` for the dataset ``items`` name (None: none)."""
    resolver = ObsCoreResolver(settings.obscore_tap_url, settings.obscore_table,
                               settings.obscore_timeout)
    dataset = requested_dataset(items, resolver)
    if dataset is None:
        return None
    values, problems = prefill(activity, dataset.values)
    form = {p.name: p.default for p in activity.parameters if p.default is not None}
    form.update(values, PHASE="RUN")
    return DatasetForm(values, problems, dataset, form)
