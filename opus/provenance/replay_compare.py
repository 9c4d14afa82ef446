"""The outcome of a replay: new products against the originals (``GET /provenance/replay/ID``).

The comparison reads only the provenance record (ProvenanceDM 1.0: the Entities each
Activity generated, with their sha256), so it still works after either job was deleted.
It is computed the first time it is asked for after the new run ended, then stored with the
replay (a conditional UPDATE: two concurrent first readers store it once), together with the
pairs (new entity, original entity) — the new product regenerates the old one, PROV-DM
``alternateOf``.

Per result id the verdict is "identical" (same sha256), "different", "missing" (the new run
did not make it), "extra" (only the new run made it) or "unknown" (a sha256 was not
recorded). The overall verdict is "identical" when the new run ended in the same phase as the
original and every result is identical, else "different".

A replay record is read by those who may read its new job (the job, or its run once the job
is gone); for anyone else it does not exist (404).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from opus.errors import NotFoundError
from opus.provenance.replay import recorded_inputs
from opus.storage.jobs import JobStore
from opus.storage.provenance import ProvenanceStore, activity_id
from opus.uws import params
from opus.uws.inputs import MayRead

RELATION = "prov:alternateOf"


def _generated(provenance: ProvenanceStore, run_id: str) -> dict[str, dict[str, Any]]:
    """{result id: entity, as a dict of its columns} of the products of a run."""
    return {(e.result_id or e.name or e.id): dataclasses.asdict(e)
            for e in provenance.generated(run_id)}


def _verdict(original: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    if original is None:
        return "extra"
    if new is None:
        return "missing"
    if not original["sha256"] or not new["sha256"]:
        return "unknown"
    return "identical" if original["sha256"] == new["sha256"] else "different"


def _side(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"entity": f"opus:{row['id']}", "sha256": row["sha256"], "size": row["size"]}


def compare(provenance: ProvenanceStore, original: dict[str, Any],
            new: dict[str, Any]) -> dict[str, Any]:
    """The comparison of two recorded runs (activity rows)."""
    before, after = _generated(provenance, original["id"]), _generated(provenance, new["id"])
    results = []
    for result_id in sorted(set(before) | set(after)):
        results.append({"result_id": result_id, "original": _side(before.get(result_id)),
                        "new": _side(after.get(result_id)),
                        "verdict": _verdict(before.get(result_id), after.get(result_id))})
    inputs_before = recorded_inputs(provenance, original["id"])
    inputs_after = recorded_inputs(provenance, new["id"])
    inputs = [{"role": role, "original": _side(inputs_before.get(role)),
               "new": _side(inputs_after.get(role)),
               "verdict": _verdict(inputs_before.get(role), inputs_after.get(role))}
              for role in sorted(set(inputs_before) | set(inputs_after))]
    same_phase = original["phase"] == new["phase"]
    identical = same_phase and all(r["verdict"] == "identical" for r in results)
    return {"verdict": "identical" if identical else "different",
            "phases": {"original": original["phase"], "new": new["phase"]},
            "results": results, "inputs": inputs}


def _pairs(new_job_id: str, comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """``prov_replay_pair`` rows: each new product and the original it regenerates."""
    return [{"new_entity_id": r["new"]["entity"].removeprefix("opus:"),
             "original_entity_id": r["original"]["entity"].removeprefix("opus:"),
             "new_job_id": new_job_id, "result_id": r["result_id"], "verdict": r["verdict"]}
            for r in comparison["results"] if r["original"] and r["new"]]


def _job_json(row: dict[str, Any] | None, job_id: str | None, activity: str | None,
              root_url: str) -> dict[str, Any]:
    return {
        "activity_id": f"opus:{row['id']}" if row else None,
        "job_id": job_id,
        "job_url": f"{root_url}/rest/{activity}/{job_id}" if job_id and activity else None,
        "activity": activity,
        "version": row["description_version"] if row else None,
        "phase": row["phase"] if row else None,
        "end_time": params.format_datetime(row["end_time"]) or None if row else None,
        "provenance_url": f"{root_url}/provsap?ID=opus:{row['id']}" if row else None,
    }


def replay_status(provenance: ProvenanceStore, store: JobStore, new_job_id: str,
                  root_url: str, may_read: MayRead) -> dict[str, Any]:
    """The replay whose new job is ``new_job_id``, compared once the new run has ended, if
    the caller ``may_read`` that job."""
    unknown = NotFoundError(f"no replay with job {params.shown(new_job_id)}")
    if not params.plausible_job_id(new_job_id):
        raise unknown
    record = provenance.replay(new_job_id)
    if record is None:
        raise unknown
    new = provenance.activity(activity_id(new_job_id))
    job = store.get(new_job_id, with_results=False)  # after the run: its phase is as fresh
    owner: tuple[str | None, bool] = (
        (job.owner_key, job.public) if job is not None else
        (new["owner_key"], bool(new["public"])) if new is not None else
        (record["owner_key"], False))
    if not may_read(*owner):
        raise unknown
    original = provenance.activity(record["original_activity_id"])
    if original is None:
        raise NotFoundError(f"the replayed run of job {params.shown(new_job_id)} is gone")
    # The new run's record is written in the transaction that ends its job: once it is
    # there, the run is over and the comparison final.
    if record["compared_at"] is None and new is not None:
        fresh = compare(provenance, original, new)
        provenance.store_comparison(new_job_id, fresh, _pairs(new_job_id, fresh))
        record = provenance.replay(new_job_id) or record
    checks = json.loads(record["checks"])
    comparison = json.loads(record["comparison"]) if record["comparison"] else None
    new_json = _job_json(new, new_job_id, original["name"], root_url)
    if job is not None:
        new_json["phase"] = job.phase
    answer: dict[str, Any] = {
        "replay": f"{root_url}/provenance/replay/{new_job_id}",
        "requested": record["requested_id"],
        "original": _job_json(original, record["original_job_id"], original["name"], root_url),
        "new": new_json,
        "forced": bool(record["forced"]),
        "overridden": checks.get("overridden", []),
        "notes": checks.get("notes", []),
        "created": params.format_datetime(record["created"]),
        "status": "compared" if comparison else "waiting",
        "compared": params.format_datetime(record["compared_at"]) or None,
        "verdict": comparison["verdict"] if comparison else None,
        "phases": comparison["phases"] if comparison else None,
        "results": comparison["results"] if comparison else [],
        "inputs": comparison["inputs"] if comparison else [],
        "pairs": [{"new": r["new"]["entity"], "original": r["original"]["entity"],
                   "result_id": r["result_id"], "relation": RELATION, "verdict": r["verdict"]}
                  for r in (comparison["results"] if comparison else [])
                  if r["original"] and r["new"]],
    }
    return answer
