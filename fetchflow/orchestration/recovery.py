"""Crash recovery: a run whose machine died ends ``Crashed`` and runs again from its
checkpoints (``fetchflow recover``).

Prefect leaves a flow run ``Running`` forever when the machine (or the whole process tree)
that ran it is gone. fetchflow knows better: a live run refreshes its record in the store
(``runs/<id>/run.json``, ``heartbeat_at``) every ``FETCHFLOW_HEARTBEAT_SECONDS`` (10 s),
from a thread of its own, whatever Prefect does. :func:`recover_once` looks at every flow
run in state ``Running`` or ``Pending`` that is fetchflow's (its deployment is tagged
``fetchflow``, or the store holds its record) and declares it dead only when the store says
so:

- ``Running``, its record written by this attempt (``attempt`` >= Prefect's ``run_count``):
  dead when the record's heartbeat is older than 6 heartbeats
  (:func:`fetchflow.orchestration.run_claim.is_stale`). A run that wrote its end but whose
  process died before Prefect heard it is the same case (its end refreshed the heartbeat);
- ``Running``, a newer attempt that has not written its record yet (it waits for an older
  attempt that still looked alive, see :mod:`~fetchflow.orchestration.run_claim`, or it
  died before writing): dead once it had a whole window after it should have taken over:
  ``now > max(heartbeat + window, running since) + window``;
- ``Running`` and no record at all: dead after a window in ``Running``, and only when the
  store holds the record of another run of the same flow (proof that this is the store its
  runs write to: a ``recover`` pointed at the wrong store never touches a live run);
- ``Pending`` (a worker claimed it and died before it started): dead after
  ``pending_seconds`` (default 10 minutes). Nothing of fetchflow runs yet in a Pending run,
  so there is no heartbeat to go by, only time: a container or a Kubernetes pod may take
  minutes to start, and on a loaded machine (load 13 on 2 cores) a process worker's runs
  stayed Pending over 20 s. A live Pending run declared dead is rescheduled and starts twice;
  the claim in the store still lets only one attempt run (measured: every run Completed once,
  no call repeated), but it is wasted work: keep this window long.

A dead run is set ``Crashed`` (forced; the message names its last heartbeat, host and
attempt). When it belongs to a deployment it is then set ``Scheduled`` (what ``prefect
flow-run retry`` does): a worker picks it up, and the new attempt's claim resumes it from its
checkpoints (completed steps reused, paid images kept); it keeps its first scheduled time,
so workers take it before the runs created after it. A run without a deployment (a
``fetchflow run`` in a terminal) is only marked ``Crashed``; its message says ``fetchflow run
FILE --resume ID``. A run that has crashed ``max_attempts`` times is not rescheduled again.

How long: a dead run is marked within ``6 x FETCHFLOW_HEARTBEAT_SECONDS + every`` seconds of
its last heartbeat, plus the time one look takes (a second or two): 70 s with the defaults
(``--every 10``); then a worker with a free slot takes it at its next poll.

Never twice at once: a live run's heartbeat is fresh, so it is never declared dead; and
if a run that only lost touch with the store comes back, the claim in the store keeps the
later attempt from running beside it and the earlier one from overwriting its end.
The machines' clocks must agree (NTP): heartbeats are compared with this machine's clock.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

from fetchflow.errors import StorageError
from fetchflow.orchestration.run_claim import STALE_HEARTBEATS
from fetchflow.run.checkpoints import run_key

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from fetchflow.storage import AssetStore

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PENDING_SECONDS",
    "DEFAULT_WATCH_SECONDS",
    "Recovered",
    "Verdict",
    "judge",
    "recover_once",
    "watch",
]

#: How often ``--watch`` looks, by default.
DEFAULT_WATCH_SECONDS = 10.0
#: How long a run may stay ``Pending`` (claimed by a worker, not started) by default.
DEFAULT_PENDING_SECONDS = 600.0
#: A run that crashed this many times is marked ``Crashed`` and left there.
DEFAULT_MAX_ATTEMPTS = 3
#: Tag of the deployments ``fetchflow serve`` and ``fetchflow deploy`` make.
FETCHFLOW_TAG = "fetchflow"
#: How many runs one page of the query holds.
_PAGE = 200
#: How many earlier runs of a flow are looked up to prove the store is theirs.
_EVIDENCE_RUNS = 20


def _parse_time(value: object) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def heartbeat_seconds_of(record: dict[str, object] | None, settings: Settings) -> float:
    """The heartbeat period to judge a record by: this machine's setting, or the one the run
    wrote in its record (``heartbeat_seconds``) when longer, so a run with a slow heartbeat
    is never judged by a faster one."""
    written = record.get("heartbeat_seconds") if record else None
    try:
        theirs = float(written) if isinstance(written, int | float | str) else 0.0
    except ValueError:
        theirs = 0.0
    return max(settings.heartbeat_seconds, theirs)


@dataclass(frozen=True)
class Verdict:
    """Whether a run is dead, and why (said in the Crashed message and on the console).

    Attributes:
        dead: The run's process is gone.
        why: One sentence: what the store and Prefect say.
        unsure: Not dead, but it cannot be told (no record, and the store holds no run of
            this flow): said once, never acted on.
    """

    dead: bool
    why: str
    unsure: bool = False


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago"


def judge(
    *,
    state: str,
    since: datetime,
    run_count: int,
    record: dict[str, object] | None,
    window: float,
    pending_seconds: float,
    store_is_theirs: Callable[[], bool],
    now: datetime,
) -> Verdict:
    """Whether a ``Running`` or ``Pending`` flow run is dead (see the module's docstring).

    Args:
        state: ``RUNNING`` or ``PENDING``.
        since: When the run entered that state.
        run_count: Prefect's attempt count of the run.
        record: Its ``run.json`` in the store, None when there is none.
        window: 6 heartbeats, in seconds.
        pending_seconds: How long a run may stay ``Pending``.
        store_is_theirs: Whether the store holds a record of another run of this flow.
        now: The time now (aware).
    """
    in_state = (now - since).total_seconds()
    if state == "PENDING":
        if in_state > max(pending_seconds, window):
            return Verdict(True, f"Pending since {_ago(in_state)}: its worker never started it")
        return Verdict(False, "pending")
    if record is None:
        if in_state <= window:
            return Verdict(False, "starting")
        if not store_is_theirs():
            return Verdict(
                False,
                f"Running for {in_state:.0f} s with no record in this store, which holds no "
                "run of this flow: is it the store its workers use (FETCHFLOW_STORE)?",
                unsure=True,
            )
        return Verdict(
            True,
            f"Running for {in_state:.0f} s and never wrote its record: it died starting",
        )
    beat = _parse_time(record.get("heartbeat_at"))
    age = (now - beat).total_seconds() if beat is not None else float("inf")
    host = record.get("host") or "?"
    attempt = record.get("attempt")
    last = (
        f"its last heartbeat was {beat.isoformat(timespec='seconds')} ({_ago(age)}, host "
        f"{host}, pid {record.get('pid')}, attempt {attempt})"
        if beat is not None
        else f"its record has no heartbeat (host {host}, attempt {attempt})"
    )
    written_by = attempt if isinstance(attempt, int) else 0
    if written_by >= run_count:
        if age > window:
            return Verdict(True, f"no heartbeat for over {window:g} s: {last}")
        return Verdict(False, "alive")
    # A newer attempt runs in Prefect and has not written its record: it waits for the
    # older one (which looked alive) or died before writing; it takes over within one
    # heartbeat once the older one's record is stale.
    due = max(age - window, 0.0)  # seconds since it should have taken over
    if min(due, in_state) > window:
        return Verdict(
            True,
            f"attempt {run_count} never took over from attempt {attempt}: {last}",
        )
    return Verdict(False, "taking over")


@dataclass(frozen=True)
class Recovered:
    """One run ``recover`` acted on.

    Attributes:
        run_id: The flow run.
        name: ``<flow>/<flow run name>``.
        rescheduled: Set ``Scheduled`` again (a worker resumes it from its checkpoints).
        line: What was printed.
    """

    run_id: str
    name: str
    rescheduled: bool
    line: str


class _Pass:
    """One look at the server and the store."""

    def __init__(
        self,
        client: Any,
        store: AssetStore,
        settings: Settings,
        *,
        pending_seconds: float,
        max_attempts: int,
        now: Callable[[], datetime],
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.pending_seconds = pending_seconds
        self.max_attempts = max_attempts
        self.now = now
        self._flow_names: dict[UUID, str] = {}
        self._evidence: dict[UUID, bool] = {}

    def candidates(self) -> Iterator[Any]:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        wanted = FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
            )
        )
        offset = 0
        while True:
            page = self.client.read_flow_runs(
                flow_run_filter=wanted, sort=FlowRunSort.ID_DESC, limit=_PAGE, offset=offset
            )
            yield from page
            if len(page) < _PAGE:
                return
            offset += len(page)

    def flow_name(self, flow_id: UUID) -> str:
        if flow_id not in self._flow_names:
            try:
                self._flow_names[flow_id] = str(self.client.read_flow(flow_id).name)
            except Exception:  # only for display
                self._flow_names[flow_id] = str(flow_id)
        return self._flow_names[flow_id]

    def store_is_theirs(self, flow_run: Any) -> bool:
        """Whether the store holds the record of another run of this run's flow."""
        flow_id = flow_run.flow_id
        if flow_id not in self._evidence:
            from prefect.client.schemas.filters import FlowFilter, FlowFilterId
            from prefect.client.schemas.sorting import FlowRunSort

            others = self.client.read_flow_runs(
                flow_filter=FlowFilter(id=FlowFilterId(any_=[flow_id])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=_EVIDENCE_RUNS,
            )
            self._evidence[flow_id] = any(
                other.id != flow_run.id and self.store.get_state(run_key(str(other.id)))
                for other in others
            )
        return self._evidence[flow_id]

    def verdict(self, flow_run: Any) -> tuple[Verdict, dict[str, object] | None] | None:
        """The run's verdict and record; None when the run is not fetchflow's.

        Raises:
            StorageError: The store cannot be read.
        """
        state = flow_run.state
        if state is None or state.type.value not in ("RUNNING", "PENDING"):
            return None
        record = self.store.get_state(run_key(str(flow_run.id)))
        if record is None and FETCHFLOW_TAG not in (flow_run.tags or []):
            return None  # another Prefect flow on this server: not ours to judge
        window = STALE_HEARTBEATS * heartbeat_seconds_of(record, self.settings)
        verdict = judge(
            state=state.type.value,
            since=state.timestamp,
            run_count=int(flow_run.run_count or 0),
            record=record,
            window=window,
            pending_seconds=self.pending_seconds,
            store_is_theirs=lambda: self.store_is_theirs(flow_run),
            now=self.now(),
        )
        return verdict, record

    def act(self, flow_run: Any, verdict: Verdict, record: dict[str, object] | None) -> Recovered:
        from prefect.states import Crashed, Scheduled

        run_id = str(flow_run.id)
        name = f"{self.flow_name(flow_run.flow_id)}/{flow_run.name}"
        attempts = max(int(flow_run.run_count or 0), 1)
        if flow_run.deployment_id is None:
            workflow = str((record or {}).get("file") or "FILE")
            next_step = f"resume it: fetchflow run {workflow} --resume {run_id}"
            again = False
        elif attempts >= self.max_attempts:
            next_step = (
                f"not rescheduled: it crashed {attempts} time(s) (--max-attempts "
                f"{self.max_attempts}); retry it by hand: prefect flow-run retry {run_id}"
            )
            again = False
        else:
            next_step = (
                "rescheduled: a worker runs it again from its checkpoints (completed steps "
                "reused, paid images kept)"
            )
            again = True
        message = f"fetchflow recover: the run's process is gone ({verdict.why}); {next_step}"
        self.client.set_flow_run_state(flow_run.id, Crashed(message=message), force=True)
        if again:
            # Its first scheduled time: it keeps its place at the head of the pool's queue
            # instead of waiting behind every run created after it.
            self.client.set_flow_run_state(
                flow_run.id,
                Scheduled(
                    scheduled_time=flow_run.expected_start_time or self.now(),
                    message=f"fetchflow recover: attempt {attempts + 1} after a crash",
                ),
                force=True,
            )
        line = f"crashed {name} ({run_id}): {verdict.why}; {next_step}"
        return Recovered(run_id, name, again, line)

    def still_the_same(self, flow_run: Any) -> bool:
        """Whether the run is in the very state it was judged in (nothing moved since)."""
        fresh = self.client.read_flow_run(flow_run.id)
        return (
            fresh.state is not None
            and flow_run.state is not None
            and fresh.state.id == flow_run.state.id
        )


def _default_now() -> datetime:
    return datetime.now(UTC)


def recover_once(
    settings: Settings,
    open_store: Callable[[], AssetStore],
    *,
    pending_seconds: float = DEFAULT_PENDING_SECONDS,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    out: TextIO | None = None,
    noted: set[str] | None = None,
    now: Callable[[], datetime] = _default_now,
) -> list[Recovered]:
    """Look once at every ``Running``/``Pending`` run of the Prefect server
    (``PREFECT_API_URL``) and crash (and reschedule) the dead ones; one line each on ``out``.

    ``noted`` keeps the ids of runs already said to be undecidable (said once per watch).

    Raises:
        StorageError: The store cannot be read (nothing is touched then).
    """
    from prefect.client.orchestration import get_client

    out = out or sys.stdout
    store = open_store()
    done: list[Recovered] = []
    with get_client(sync_client=True) as client:
        look = _Pass(
            client,
            store,
            settings,
            pending_seconds=pending_seconds,
            max_attempts=max_attempts,
            now=now,
        )
        for flow_run in list(look.candidates()):
            found = look.verdict(flow_run)
            if found is None:
                continue
            verdict = found[0]
            if verdict.unsure and noted is not None and str(flow_run.id) not in noted:
                noted.add(str(flow_run.id))
                name = f"{look.flow_name(flow_run.flow_id)}/{flow_run.name}"
                print(f"not touched {name} ({flow_run.id}): {verdict.why}", file=out, flush=True)
            if not verdict.dead:
                continue
            # Judged on a snapshot: look again right before acting (it may have ended, or
            # written a heartbeat, meanwhile).
            if not look.still_the_same(flow_run):
                continue
            again = look.verdict(flow_run)
            if again is None or not again[0].dead:
                continue
            recovered = look.act(flow_run, *again)
            print(recovered.line, file=out, flush=True)
            done.append(recovered)
    return done


def watch(
    settings: Settings,
    open_store: Callable[[], AssetStore],
    *,
    every: float = DEFAULT_WATCH_SECONDS,
    pending_seconds: float = DEFAULT_PENDING_SECONDS,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop: threading.Event | None = None,
) -> None:
    """:func:`recover_once` every ``every`` seconds until ``stop`` is set (or Ctrl-C).

    A store or server that cannot be reached is said on ``err`` and tried again next time.
    """
    err = err or sys.stderr
    stop = stop or threading.Event()
    noted: set[str] = set()
    trouble = ""
    while not stop.is_set():
        try:
            recover_once(
                settings,
                open_store,
                pending_seconds=pending_seconds,
                max_attempts=max_attempts,
                out=out,
                noted=noted,
            )
            said = ""
        except StorageError as error:
            said = f"fetchflow recover: cannot read the store (nothing touched): {error.format()}"
        except Exception as error:  # the server is down or restarting: try again
            said = (
                "fetchflow recover: cannot reach the Prefect server: "
                f"{type(error).__name__}: {error}"
            )
        if said and said != trouble:
            print(said, file=err, flush=True)
        trouble = said
        stop.wait(every)
