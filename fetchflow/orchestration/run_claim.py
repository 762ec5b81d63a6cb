"""One run executes once at a time: claiming a flow run through its record in the store.

Prefect runs a flow run again under the same id when it is retried (``prefect flow-run
retry``, an automation that reschedules Crashed runs, a worker that picks a rescheduled
run up). Each execution is an *attempt* (Prefect's ``run_count``). When an attempt starts:

- no record of the run in the store: a new run, nothing to reuse;
- a record whose heartbeat is fresh (refreshed less than 6 × ``FETCHFLOW_HEARTBEAT_SECONDS``
  ago) by another attempt: that attempt is alive (a zombie detector declared it dead too
  early). This one waits, heartbeat by heartbeat: if the other ends, this one ends the same
  way without running anything (never twice, never overwriting a finished run); if the
  other's heartbeat stops, this one takes over;
- otherwise (finished, failed, interrupted, or dead: its heartbeat is stale): this attempt
  takes over and resumes from the run's checkpoints: every completed step is reused, every
  paid image of a step cut short is kept.

An attempt writes the run's end only while the record still names it (:func:`still_ours`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prefect import get_run_logger
from prefect.client.schemas.objects import State
from prefect.exceptions import MissingContextError
from prefect.states import Cancelled, Completed, Failed

from fetchflow.errors import StorageError
from fetchflow.run.checkpoints import STALE_HEARTBEATS, Checkpoints, SavedRun, is_stale, run_key
from fetchflow.run.reuse import Reused, outputs_to_reuse
from fetchflow.settings import Settings
from fetchflow.workflow.plan import Plan

if TYPE_CHECKING:
    from fetchflow.run.report import RunReport
    from fetchflow.storage import AssetStore

__all__ = [
    "STALE_HEARTBEATS",
    "Claim",
    "FinishedElsewhere",
    "claim_run",
    "end_when_superseded",
    "is_stale",
    "still_ours",
]


@dataclass(frozen=True)
class FinishedElsewhere:
    """Another attempt of this run ended it while this one waited."""

    record: dict[str, object]

    def mirror(self, report: RunReport) -> State:
        """The same end as the other attempt's, said as such (fills ``report``)."""
        status = str(self.record.get("status"))
        said = str(self.record.get("message") or status)
        report.status = status if status in {"completed", "partial", "failed"} else "failed"  # type: ignore[assignment]
        report.message = (
            f"attempt {self.record.get('attempt')} of this run (on {self.record.get('host')}) "
            f"finished it, and its end is the run's (nothing ran twice): {said}"
        )
        if status == "failed":
            return Failed(message=report.message)
        if status == "interrupted":
            return Cancelled(message=report.message)
        return Completed(message=report.message)


@dataclass(frozen=True)
class Claim:
    """What an attempt found when it claimed its run.

    Attributes:
        reuse: What earlier attempts of this run made that this one reuses.
        finished_by_other: Set when a live attempt finished the run meanwhile.
    """

    reuse: dict[str, Reused] = field(default_factory=dict)
    finished_by_other: FinishedElsewhere | None = None


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger (the run's log in the UI), or this module's outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _load(open_store: Callable[[], AssetStore], run_id: str) -> SavedRun | None:
    try:
        return SavedRun.load(open_store(), run_id)
    except StorageError as error:
        _logger().warning(
            "the checkpoints of this run cannot be read (starting afresh): %s", error.format()
        )
        return None


def claim_run(
    open_store: Callable[[], AssetStore],
    run_id: str,
    plan: Plan,
    *,
    attempt: int,
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
) -> Claim:
    """Claim a flow run for this attempt; see the module's docstring.

    Returns:
        What to reuse, or that another attempt finished the run meanwhile.
    """
    saved = _load(open_store, run_id)
    if saved is None:
        return Claim()
    logger = _logger()
    waited = False
    while (
        saved.status == "running"
        and saved.record.get("attempt") != attempt
        and not is_stale(saved.record, settings.heartbeat_seconds)
    ):
        if not waited:
            logger.warning(
                "attempt %s of this run (on %s, pid %s) is still alive: waiting for it to "
                "end or to stop answering before running anything",
                saved.record.get("attempt"),
                saved.record.get("host"),
                saved.record.get("pid"),
            )
            waited = True
        sleep(settings.heartbeat_seconds)
        found = _load(open_store, run_id)
        if found is None:
            return Claim()
        saved = found
        if saved.status != "running":
            return Claim(finished_by_other=FinishedElsewhere(saved.record))
    how = f"attempt {saved.record.get('attempt')} of this run"
    reuse = outputs_to_reuse(saved, plan, how)
    if reuse:
        logger.info(
            "resuming from the checkpoints of %s (%s): %d step(s) to reuse",
            how,
            saved.status,
            sum(reused.complete for reused in reuse.values()),
        )
    return Claim(reuse=reuse)


def end_when_superseded(
    checkpoints: Checkpoints,
    report: RunReport,
    settings: Settings,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> State | None:
    """End an attempt that a later one took over: wait for that one, end as it ended.

    Returns:
        None when the run is still this attempt's (write its end as usual), or when the
        later attempt died too (this one is the survivor: its end is written). Otherwise
        the later attempt's end, mirrored: a stale copy never overwrites a finished run.
    """
    if still_ours(checkpoints, settings):
        return None
    attempt = checkpoints.record.get("attempt")
    _logger().warning(
        "attempt %s of this run was taken over by a later attempt while it was out of touch "
        "with the store: waiting for that one, its end is the run's",
        attempt,
    )
    while True:
        saved = _load(checkpoints.open_store, checkpoints.run_id)
        if saved is None or is_stale(saved.record, settings.heartbeat_seconds):
            return None
        if saved.status != "running":
            return FinishedElsewhere(saved.record).mirror(report)
        sleep(settings.heartbeat_seconds)


def still_ours(checkpoints: Checkpoints, settings: Settings) -> bool:
    """Whether the run's record still names this attempt (no later one took it over)."""
    try:
        record = checkpoints.open_store().get_state(run_key(checkpoints.run_id))
    except StorageError:
        return True  # cannot tell: the end is written (it is this attempt's own record)
    if record is None:
        return True
    return record.get("attempt") == checkpoints.record.get("attempt") or (
        record.get("status") == "running" and is_stale(record, settings.heartbeat_seconds)
    )
