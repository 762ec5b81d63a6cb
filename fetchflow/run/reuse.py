"""Never pay twice: resuming a run from its checkpoints, and the generation cache.

- Every run records itself in the asset store as it goes (:mod:`fetchflow.run.checkpoints`).
  ``fetchflow run --resume RUN_ID``, from any machine sharing the store, reuses the outputs
  of every step of that run that completed and whose definition has not changed since (no
  provider call; shown as reused), and runs the rest. A step that kept part of its work (the
  paid images of a step that was interrupted, failed or killed) gets it back
  (``StepContext.kept``) and makes only what is missing.
- A step with ``cache: true`` looks its *rendered* request up in the store's ``cache/``
  (keyed on the step type and every rendered, validated field: prompt, model, every
  parameter, seed, reference images' hashes) and reuses the output of an earlier run on a
  hit, from any machine sharing the store.

Reused asset records get fresh links from the store (presigned URLs expire).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from fetchflow.errors import ResumeError, StorageError
from fetchflow.run.checkpoints import STALE_HEARTBEATS, SavedRun, is_stale
from fetchflow.run.matrix_checkpoints import describe_kept, written_combinations
from fetchflow.workflow.plan import Plan, PlannedStep

if TYPE_CHECKING:
    from fetchflow.storage import AssetStore

__all__ = [
    "GenerationCache",
    "ResumeError",
    "Reused",
    "fresh_links",
    "outputs_to_resume",
    "outputs_to_reuse",
    "step_fingerprint",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reused:
    """An output taken from earlier work instead of running the step.

    Attributes:
        output: The step's output (JSON data).
        note: Where it came from, as users read it (``reused from run …``, ``cache hit``).
        complete: False for a partial output (what a step kept before it was interrupted,
            failed or killed): the step runs again, given it as ``StepContext.kept``.
    """

    output: object
    note: str
    complete: bool = True


def step_fingerprint(step: PlannedStep) -> str:
    """A hash of a step's definition as written (type and fields), to spot edits."""
    text = json.dumps([step.type, step.raw_config], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


#: What a run id may look like (Prefect's are UUIDs): never a path.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def _recent_runs(store: AssetStore, workflow: str) -> str:
    """The latest runs of ``workflow`` the store has, for hints (at most 3)."""
    try:
        keys = [key for key in store.list_state("runs/") if key.endswith("/run.json")]
        records = [store.get_state(key) for key in keys[-200:]]
    except StorageError:
        return "the store cannot be listed"
    mine = sorted(
        (str(r.get("started_at", "")), str(r.get("run_id", "")))
        for r in records
        if r is not None and r.get("workflow") == workflow
    )
    return ", ".join(run_id for _, run_id in mine[-3:]) or "none yet"


def _load_run(store: AssetStore, run_id: str, plan: Plan) -> SavedRun:
    if not _RUN_ID.fullmatch(run_id):
        raise ResumeError(
            f"--resume {run_id!r} is not a run id",
            "give the id fetchflow run printed (▶ workflow · run <id>); latest runs of "
            f"{plan.name}: {_recent_runs(store, plan.name)}",
        )
    try:
        saved = SavedRun.load(store, run_id)
    except StorageError as error:
        raise ResumeError(
            f"the checkpoints of run {run_id} cannot be read: {error.message}",
            error.hint or "check FETCHFLOW_STORE and the store's credentials",
        ) from None
    if saved is None:
        raise ResumeError(
            f"no run {run_id!r} in the asset store {store.describe()}",
            "resume a run that wrote to this store (the same FETCHFLOW_STORE, on any "
            f"machine); latest runs of {plan.name}: {_recent_runs(store, plan.name)}",
        )
    return saved


def outputs_to_reuse(saved: SavedRun, plan: Plan, how: str) -> dict[str, Reused]:
    """What of a saved run ``plan`` can reuse.

    Reused: every step that completed then and whose definition is unchanged. A failed,
    skipped or edited step runs again (and so does everything after it that used it); one
    that kept paid items (an interrupted, failed or killed image step) and is unchanged gets
    them as a :class:`Reused` with ``complete`` False, to make only the rest.

    Args:
        saved: The earlier run's checkpoints.
        plan: The workflow as it is now.
        how: How the notes name the earlier run (``reused from run <id>``).
    """
    fingerprints = saved.record.get("fingerprints")
    fingerprints = fingerprints if isinstance(fingerprints, dict) else {}
    reused: dict[str, Reused] = {}
    for step_id in plan.order():  # upstream first: an edited step's followers run again
        step = plan.steps[step_id]
        if fingerprints.get(step_id) != step_fingerprint(step):
            continue
        if not all(dep in reused and reused[dep].complete for dep in step.depends_on):
            continue  # what it read may change: it was made from an output that runs again
        result = saved.steps.get(step_id, {})
        if result.get("status") == "completed":
            reused[step_id] = Reused(result.get("output"), f"reused from {how}")
            continue
        kept = _merge(result.get("output"), saved.kept.get(step_id, []))
        if kept:
            counted = describe_kept(kept, written_combinations(step))
            reused[step_id] = Reused(kept, f"continued from {how} ({counted})", complete=False)
    return reused


def _merge(output: object, kept: list[object]) -> list[object]:
    """A failed step's partial output and its kept items, each item once, in order."""
    merged: list[object] = []
    seen: set[str] = set()
    for item in (output if isinstance(output, list) else []) + kept:
        text = json.dumps(_without_links(item), sort_keys=True, default=str)
        if text not in seen:
            seen.add(text)
            merged.append(item)
    return merged


def _alive(record: dict[str, object], heartbeat_seconds: float) -> bool:
    """Whether the attempt that wrote a ``running`` record may still be running: its
    heartbeat is fresh and, on this very machine, its process still exists (a run killed
    here a moment ago is dead at once; elsewhere, after 6 missed heartbeats)."""
    if is_stale(record, heartbeat_seconds):
        return False
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return True
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # there, but not ours to signal
    return True


def outputs_to_resume(
    store: AssetStore, run_id: str, plan: Plan, *, heartbeat_seconds: float = 10.0
) -> tuple[dict[str, object], dict[str, Reused]]:
    """The inputs of an earlier run of ``plan`` (from its checkpoints in the store) and the
    outputs it can reuse (see :func:`outputs_to_reuse`).

    Args:
        store: The store the run wrote to.
        run_id: The run to resume.
        plan: The workflow as it is now.
        heartbeat_seconds: ``FETCHFLOW_HEARTBEAT_SECONDS``: a run whose record is still
            ``running`` and beat more recently than 6 of them is alive.

    Raises:
        ResumeError: No such run in the store, it was a run of another workflow, or it is
            still running (resuming it would run its steps twice at once, and pay twice).
    """
    saved = _load_run(store, run_id, plan)
    if saved.record.get("workflow") != plan.name:
        raise ResumeError(
            f"run {run_id} was a run of workflow {saved.record.get('workflow')!r}, not "
            f"{plan.name!r}",
            f"resume it with its own workflow file ({saved.record.get('file')})",
        )
    if saved.status == "running" and _alive(saved.record, heartbeat_seconds):
        raise ResumeError(
            f"run {run_id} is still running (on {saved.record.get('host') or 'another machine'}, "
            f"last heartbeat {saved.record.get('heartbeat_at')}): resuming it now would run "
            "its steps a second time beside it",
            "wait for it to end, or stop it (Ctrl-C where it runs), then resume; a run whose "
            f"machine died counts as dead after {STALE_HEARTBEATS} missed heartbeats of "
            "FETCHFLOW_HEARTBEAT_SECONDS",
        )
    inputs = saved.record.get("inputs")
    if not isinstance(inputs, dict):
        raise ResumeError(
            f"the record of run {run_id} has no inputs", "run the workflow again (without --resume)"
        )
    return inputs, outputs_to_reuse(saved, plan, f"run {run_id}")


class GenerationCache:
    """Outputs of ``cache: true`` steps by their rendered request, across runs.

    Entries are state documents in the run's asset store (``cache/<key>.json``), so a
    second machine sharing the store hits them too. A store that cannot be read or written
    is a miss, never the step's failure.

    Args:
        open_store: Opens the run's store.
    """

    def __init__(self, open_store: Callable[[], AssetStore] | None) -> None:
        self.open_store = open_store

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
        if self.open_store is None:
            return None
        try:
            entry = self.open_store().get_state(f"cache/{key}.json")
        except StorageError as error:
            _log.warning("the generation cache cannot be read (a miss): %s", error.format())
            return None
        if entry is None or "output" not in entry:
            return None
        for uri in _storage_uris(entry["output"]):
            try:
                self.open_store().read(uri)
            except StorageError as error:
                # Never hand back a record of a deleted object: the step runs again.
                _log.warning(
                    "the cached output of request %s names a file the store no longer has "
                    "(a miss; the step runs again): %s",
                    key,
                    error.format(),
                )
                return None
        return Reused(entry["output"], f"cache hit (made by run {entry.get('run_id')})")

    def put(self, key: str, output: object, run_id: str) -> None:
        """Keep an output for later runs."""
        if self.open_store is None:
            return
        try:
            self.open_store().put_state(f"cache/{key}.json", {"run_id": run_id, "output": output})
        except StorageError as error:
            _log.warning("the generation cache cannot be written: %s", error.format())


def _storage_uris(value: object) -> list[str]:
    """The ``storage_uri`` of every asset record inside ``value``."""
    if isinstance(value, dict):
        own = [value["storage_uri"]] if isinstance(value.get("storage_uri"), str) else []
        return own + [uri for item in value.values() for uri in _storage_uris(item)]
    if isinstance(value, list):
        return [uri for item in value for uri in _storage_uris(item)]
    return []


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
