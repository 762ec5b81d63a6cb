"""A run's state in the asset store, written the moment it exists.

Everything ``--resume``, crash recovery and ``cache: true`` need lives in the store (the
local folder or the S3 bucket, under its prefix), so every machine that shares the store
sees it, and a process killed with SIGKILL loses nothing it had paid for::

    runs/<run id>/run.json                 the run: workflow, file hash, inputs, step
                                           fingerprints, status, attempt, heartbeat
    runs/<run id>/steps/<step id>.json     one step's result, written as it ends
    runs/<run id>/kept/<step id>/<h>.json  one paid item (an image's record) of a step
                                           that is still running, written as it is stored
    cache/<request hash>.json              a ``cache: true`` step's output by its request

Documents are small JSON objects written whole (a reader sees the old one or the new one).
A checkpoint that cannot be written is a warning, never the step's failure: the work it
describes is stored already and is in the run's output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fetchflow.errors import StorageError

if TYPE_CHECKING:
    from fetchflow.run.report import RunReport, StepResult
    from fetchflow.storage import AssetStore
    from fetchflow.workflow.plan import Plan

__all__ = [
    "STALE_HEARTBEATS",
    "Checkpoints",
    "SavedRun",
    "is_stale",
    "kept_prefix",
    "run_key",
    "step_key",
    "workflow_digest",
]

#: The version of the state documents' shape.
STATE_VERSION = 1

_log = logging.getLogger(__name__)

#: A running record not refreshed for this many heartbeats belongs to a dead attempt.
STALE_HEARTBEATS = 6


def run_key(run_id: str) -> str:
    """Where a run's record is: ``runs/<run id>/run.json``."""
    return f"runs/{run_id}/run.json"


def step_key(run_id: str, step_id: str) -> str:
    """Where one step's result is: ``runs/<run id>/steps/<step id>.json``."""
    return f"runs/{run_id}/steps/{step_id}.json"


def kept_prefix(run_id: str, step_id: str) -> str:
    """Where the paid items of a step that did not finish are: ``runs/<id>/kept/<step>/``."""
    return f"runs/{run_id}/kept/{step_id}/"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def is_stale(
    record: Mapping[str, object], heartbeat_seconds: float, now: datetime | None = None
) -> bool:
    """Whether a running record's attempt is dead: no heartbeat for 6 heartbeats, of its own
    period (``heartbeat_seconds`` in the record) or ``heartbeat_seconds``, whichever is
    longer. An unreadable ``heartbeat_at`` counts as none."""
    try:
        beat = datetime.fromisoformat(str(record.get("heartbeat_at")))
    except ValueError:
        return True
    own = record.get("heartbeat_seconds")
    period = max(heartbeat_seconds, float(own) if isinstance(own, int | float) else 0.0)
    age = ((now or datetime.now(UTC)) - beat).total_seconds()
    return age > STALE_HEARTBEATS * period


def workflow_digest(plan: Plan) -> str:
    """The SHA-256 of the workflow file's bytes (which version of the YAML ran)."""
    try:
        return hashlib.sha256(plan.file.read_bytes()).hexdigest()
    except OSError:
        return ""


@dataclass
class Checkpoints:
    """Writes one run's state to the store as it happens.

    Picklable when ``open_store`` is (a :class:`StoreOpener`): steps in other processes
    record their paid items through their own copy.

    Args:
        open_store: Opens the run's store.
        run_id: The run (its Prefect flow run id).
    """

    open_store: Callable[[], AssetStore]
    run_id: str
    record: dict[str, object] = field(default_factory=dict)
    #: A later attempt took the run over: this one no longer writes the run's record.
    superseded: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self) -> dict[str, object]:
        return {
            "open_store": self.open_store,
            "run_id": self.run_id,
            "record": {},
            "superseded": False,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _put(self, key: str, document: Mapping[str, object]) -> bool:
        try:
            self.open_store().put_state(key, {"fetchflow_state": STATE_VERSION, **document})
        except StorageError as error:
            _log.warning(
                "could not write the checkpoint %s (resume and recovery will redo this part): %s",
                key,
                error.format(),
            )
            return False
        return True

    def start(
        self,
        plan: Plan,
        inputs: Mapping[str, object],
        fingerprints: Mapping[str, str],
        *,
        attempt: int = 1,
        resumed_from: str | None = None,
        heartbeat_seconds: float = 10.0,
    ) -> None:
        """Write the run's record: it exists now, and what it runs."""
        self.record = {
            "kind": "run",
            "run_id": self.run_id,
            "workflow": plan.name,
            "file": str(plan.file),
            "workflow_sha256": workflow_digest(plan),
            "inputs": dict(inputs),
            "fingerprints": dict(fingerprints),
            "status": "running",
            "message": "",
            "attempt": attempt,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": _now(),
            "heartbeat_at": _now(),
            "heartbeat_seconds": heartbeat_seconds,
            "resumed_from": resumed_from,
        }
        self._put(run_key(self.run_id), self.record)

    def heartbeat(self) -> None:
        """Say the run is alive (its record's ``heartbeat_at``), unless a later attempt took
        the run over: then this one stops writing the run's record (:attr:`superseded`)."""
        with self._lock:
            if self.record.get("status") != "running" or self.superseded:
                return
            try:
                current = self.open_store().get_state(run_key(self.run_id))
            except StorageError:
                current = None  # cannot tell: keep saying this attempt is alive
            if current is not None and current.get("attempt") != self.record.get("attempt"):
                # A later attempt took the run over (this one was out of touch for longer
                # than six heartbeats): its record is the run's; never write over it.
                self.superseded = True
                _log.warning(
                    "attempt %s of run %s was taken over by attempt %s: it stops beating",
                    self.record.get("attempt"),
                    self.run_id,
                    current.get("attempt"),
                )
                return
            self.record["heartbeat_at"] = _now()
            self._put(run_key(self.run_id), self.record)

    def step(self, step_id: str, result: StepResult, fingerprint: str) -> None:
        """Record how a step ended (its output with it), the moment it ended."""
        self._put(
            step_key(self.run_id, step_id),
            {
                "kind": "step",
                "step_id": step_id,
                "fingerprint": fingerprint,
                "ended_at": _now(),
                "attempts": result.attempts,
                "seconds": result.seconds,
                **result.to_json(),
            },
        )

    def keep(self, step_id: str, item: object) -> None:
        """Record one paid item of a running step (an image's record) the moment it is
        stored; named by its content, so recording it twice is harmless."""
        text = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
        name = hashlib.sha256(text.encode()).hexdigest()[:32]
        self._put(
            f"{kept_prefix(self.run_id, step_id)}{name}.json",
            {"kind": "kept", "step_id": step_id, "at": _now(), "item": item},
        )

    def finish(self, report: RunReport) -> None:
        """Write the run's final status and message."""
        with self._lock:
            if not self.record:
                return
            self.record.update(
                status=report.status, message=report.message, ended_at=_now(), heartbeat_at=_now()
            )
            self._put(run_key(self.run_id), self.record)


@dataclass(frozen=True)
class SavedRun:
    """A run as its checkpoints in the store describe it.

    Attributes:
        run_id: The run.
        record: Its ``run.json`` (workflow, file, inputs, fingerprints, status, ...).
        steps: Each step's result that was recorded (status, output, error, fingerprint).
        kept: The paid items of each step that recorded some, oldest first.
    """

    run_id: str
    record: dict[str, object]
    steps: dict[str, dict[str, object]]
    kept: dict[str, list[object]]

    @classmethod
    def load(cls, store: AssetStore, run_id: str) -> SavedRun | None:
        """Read a run's checkpoints; None when the store has no record of it.

        Raises:
            StorageError: The store cannot be read.
        """
        record = store.get_state(run_key(run_id))
        if record is None:
            return None
        steps: dict[str, dict[str, object]] = {}
        kept: dict[str, list[tuple[str, object]]] = {}
        for key in store.list_state(f"runs/{run_id}/"):
            parts = key.split("/")
            if len(parts) == 4 and parts[2] == "steps" and parts[3].endswith(".json"):
                document = store.get_state(key)
                if document is not None:
                    steps[parts[3].removesuffix(".json")] = document
            elif len(parts) == 5 and parts[2] == "kept":
                document = store.get_state(key)
                if document is not None and "item" in document:
                    kept.setdefault(parts[3], []).append(
                        (str(document.get("at", "")), document["item"])
                    )
        ordered = {
            step: [item for _, item in sorted(items, key=lambda pair: pair[0])]
            for step, items in kept.items()
        }
        return cls(run_id, record, steps, ordered)

    @property
    def status(self) -> str:
        """``running`` until the run wrote its end (a run killed mid-way stays so)."""
        return str(self.record.get("status", ""))
