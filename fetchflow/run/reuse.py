"""Never pay twice: resuming a run from what it already made, and the generation cache.

- Every run's report is saved under ``<home>/runs/<run id>.json`` with its inputs and a
  fingerprint of each step's definition. ``fetchflow run --resume RUN_ID`` reuses the
  outputs of every step of that run that completed and whose definition has not changed
  since (no provider call; shown as reused), and runs the rest. A step that kept part of its
  work (an interrupted image step's paid images) gets it back (``StepContext.kept``) and
  makes only what is missing. Interrupted runs are saved too.
- A step with ``cache: true`` looks its *rendered* request up in ``<home>/cache/`` (keyed on
  the step type and every rendered, validated field: prompt, model, every parameter, seed,
  reference images' hashes) and reuses the output of an earlier run on a hit.

Reused asset records get fresh links from the store (presigned URLs expire).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from fetchflow.errors import ResumeError
from fetchflow.workflow.plan import Plan, PlannedStep

if TYPE_CHECKING:
    from fetchflow.run.report import RunReport
    from fetchflow.storage import AssetStore

__all__ = [
    "GenerationCache",
    "ResumeError",
    "Reused",
    "fresh_links",
    "outputs_to_resume",
    "save_run",
    "step_fingerprint",
]


@dataclass(frozen=True)
class Reused:
    """An output taken from earlier work instead of running the step.

    Attributes:
        output: The step's output (JSON data).
        note: Where it came from, as users read it (``reused from run …``, ``cache hit``).
        complete: False for a partial output (what a step kept before it was interrupted
            or failed): the step runs again, given it as ``StepContext.kept``.
    """

    output: object
    note: str
    complete: bool = True


def _write_json(path: Path, document: object) -> None:
    """Write atomically, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(document, file, ensure_ascii=False, default=str)
    Path(temporary).replace(path)


def step_fingerprint(step: PlannedStep) -> str:
    """A hash of a step's definition as written (type and fields), to spot edits."""
    text = json.dumps([step.type, step.raw_config], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


#: What a run id may look like (Prefect's are UUIDs): never a path.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def _runs_dir(home: Path) -> Path:
    return home / "runs"


def save_run(home: Path, plan: Plan, inputs: Mapping[str, object], report: RunReport) -> Path:
    """Keep a finished run's report for ``--resume``."""
    document = {
        "workflow": plan.name,
        "file": str(plan.file),
        "inputs": dict(inputs),
        "run_id": report.run_id,
        "status": report.status,
        "fingerprints": {sid: step_fingerprint(step) for sid, step in plan.steps.items()},
        "steps": {sid: result.to_json() for sid, result in report.steps.items()},
    }
    path = _runs_dir(home) / f"{report.run_id}.json"
    _write_json(path, document)
    return path


def _recent_runs(home: Path) -> str:
    try:
        saved = sorted(_runs_dir(home).glob("*.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        saved = []
    return ", ".join(p.stem for p in saved[-3:]) or "none yet"


def _load_run(home: Path, run_id: str) -> dict[str, object]:
    if not _RUN_ID.fullmatch(run_id):
        raise ResumeError(
            f"--resume {run_id!r} is not a run id",
            "give the id fetchflow run printed (▶ workflow · run <id>); latest saved runs: "
            + _recent_runs(home),
        )
    path = _runs_dir(home) / f"{run_id}.json"
    if not path.is_file():
        raise ResumeError(
            f"no saved run {run_id!r} in {_runs_dir(home)}",
            "resume a run made on this machine with this FETCHFLOW_HOME (latest: "
            f"{_recent_runs(home)})",
        )
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResumeError(
            f"saved run {path} cannot be read: {error}",
            "delete it and run the workflow again (without --resume)",
        ) from None
    if not isinstance(loaded, dict):
        raise ResumeError(
            f"{path} is not a saved run", "delete it and run the workflow again (without --resume)"
        )
    return loaded


def outputs_to_resume(
    home: Path, run_id: str, plan: Plan
) -> tuple[dict[str, object], dict[str, Reused]]:
    """The inputs of an earlier run of ``plan`` and the outputs it can reuse.

    Reused: every step that completed then and whose definition is unchanged. A failed,
    skipped or edited step runs again (and so does everything after it that used it); one
    that kept a partial output (a list: the images an interrupted step made) and is
    unchanged gets it as a :class:`Reused` with ``complete`` False, to make only the rest.

    Raises:
        ResumeError: No such saved run, or it was a run of another workflow.
    """
    saved = _load_run(home, run_id)
    if saved.get("workflow") != plan.name:
        raise ResumeError(
            f"run {run_id} was a run of workflow {saved.get('workflow')!r}, not {plan.name!r}",
            f"resume it with its own workflow file ({saved.get('file')})",
        )
    fingerprints = saved.get("fingerprints")
    steps = saved.get("steps")
    inputs = saved.get("inputs")
    if not (
        isinstance(fingerprints, dict) and isinstance(steps, dict) and isinstance(inputs, dict)
    ):
        raise ResumeError(
            f"saved run {run_id} is incomplete", "run the workflow again (without --resume)"
        )
    assert isinstance(inputs, dict)
    reused: dict[str, Reused] = {}
    for step_id, step in plan.steps.items():
        result = steps.get(step_id)
        if not isinstance(result, dict) or fingerprints.get(step_id) != step_fingerprint(step):
            continue
        output = result.get("output")
        if result.get("status") == "completed":
            reused[step_id] = Reused(output, f"reused from run {run_id}")
        elif result.get("status") == "failed" and isinstance(output, list) and output:
            note = f"continued from run {run_id} ({len(output)} kept)"
            reused[step_id] = Reused(output, note, complete=False)
    return inputs, reused


class GenerationCache:
    """Outputs of ``cache: true`` steps by their rendered request, across runs.

    Args:
        folder: Where entries are kept (``<home>/cache``).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(step: PlannedStep, config: BaseModel) -> str:
        """The cache key of a rendered, validated request.

        An asset record in the config (an edit's input) counts by its content, not its
        ``file_url``: a presigned link changes every run, the stored object does not.
        """
        request = {"type": step.type, "config": _without_links(config.model_dump(mode="json"))}
        text = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Reused | None:
        """The cached output for ``key``, if any."""
        path = self.folder / f"{key}.json"
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or "output" not in entry:
            return None
        return Reused(entry["output"], f"cache hit (made by run {entry.get('run_id')})")

    def put(self, key: str, output: object, run_id: str) -> None:
        """Keep an output for later runs."""
        _write_json(self.folder / f"{key}.json", {"run_id": run_id, "output": output})


def _without_links(value: object) -> object:
    """``value`` with ``file_url`` left out of every asset record (a mapping with a
    ``storage_uri``) inside it."""
    if isinstance(value, dict):
        record = isinstance(value.get("storage_uri"), str)
        return {
            key: _without_links(item)
            for key, item in value.items()
            if not (record and key == "file_url")
        }
    if isinstance(value, list):
        return [_without_links(item) for item in value]
    return value


def fresh_links(output: object, open_store: Callable[[], AssetStore] | None) -> object:
    """The output with every asset record's ``file_url`` renewed through the store."""
    if open_store is None or not isinstance(output, list):
        return output
    renewed: list[object] = []
    for item in output:
        if isinstance(item, dict) and isinstance(item.get("storage_uri"), str):
            item = {**item, "file_url": open_store().file_url(item["storage_uri"])}
        renewed.append(item)
    return renewed
