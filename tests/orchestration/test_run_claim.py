"""One run executes once at a time: how an attempt claims its flow run from the store.

The records are written by :class:`Checkpoints`, the way runs write them, in a real local
store; ``sleep`` is the only thing given in (it is where another attempt moves on).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fetchflow.orchestration.run_claim import (
    claim_run,
    end_when_superseded,
    is_stale,
    still_ours,
)
from fetchflow.run.checkpoints import Checkpoints, run_key
from fetchflow.run.preflight import StoreOpener
from fetchflow.run.report import RunReport, StepResult
from fetchflow.run.reuse import Reused, step_fingerprint
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file

if TYPE_CHECKING:
    from fetchflow.registry import StepRegistry
    from fetchflow.workflow.plan import Plan

FLOW = Path(__file__).resolve().parents[1] / "data" / "reuse" / "resume.yaml"
RUN = "6f1c2a9e-0000-4000-8000-000000000001"


@pytest.fixture
def plan(plugin_registry: StepRegistry) -> Plan:
    return check_file(FLOW, plugin_registry)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, home=tmp_path / "home", heartbeat_seconds=1)  # type: ignore[call-arg]


def earlier_attempt(plan: Plan, settings: Settings, *, attempt: int = 1) -> Checkpoints:
    """Attempt ``attempt`` of the run: started, its first step completed, still running."""
    checkpoints = Checkpoints(StoreOpener(settings), RUN)
    fingerprints = {sid: step_fingerprint(step) for sid, step in plan.steps.items()}
    checkpoints.start(plan, {"state": "/tmp/x"}, fingerprints, attempt=attempt, heartbeat_seconds=1)
    checkpoints.step("counted", StepResult("completed", "ok", attempts=1), fingerprints["counted"])
    return checkpoints


def age(checkpoints: Checkpoints, seconds: float) -> None:
    """Make the attempt's last heartbeat ``seconds`` old (its process stopped beating)."""
    store = checkpoints.open_store()
    record = store.get_state(run_key(RUN))
    assert record is not None
    record["heartbeat_at"] = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
    store.put_state(run_key(RUN), record)


def sleeps(*actions: Callable[[], None]) -> tuple[Callable[[float], None], list[float]]:
    """A ``sleep`` that does one action per call (what the other attempt did meanwhile)."""
    slept: list[float] = []
    pending = list(actions)

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        assert pending, "waited longer than the test expected"
        pending.pop(0)()

    return sleep, slept


def test_a_new_run_has_nothing_to_reuse(plan: Plan, settings: Settings) -> None:
    claim = claim_run(StoreOpener(settings), RUN, plan, attempt=1, settings=settings)

    assert (claim.reuse, claim.finished_by_other) == ({}, None)


def test_a_dead_attempt_is_taken_over_and_its_completed_steps_are_reused(
    plan: Plan, settings: Settings
) -> None:
    earlier = earlier_attempt(plan, settings)
    age(earlier, 7)  # six heartbeats and more: its process is gone

    claim = claim_run(StoreOpener(settings), RUN, plan, attempt=2, settings=settings)

    assert claim.finished_by_other is None
    assert claim.reuse == {"counted": Reused("ok", "reused from attempt 1 of this run")}


def test_a_live_attempt_is_waited_for_and_its_end_is_mirrored_never_run_twice(
    plan: Plan, settings: Settings
) -> None:
    earlier = earlier_attempt(plan, settings)
    report = RunReport(workflow=plan.name, run_id=RUN, status="completed", message="3 done")
    sleep, slept = sleeps(earlier.heartbeat, lambda: earlier.finish(report))

    claim = claim_run(StoreOpener(settings), RUN, plan, attempt=2, settings=settings, sleep=sleep)

    assert slept == [1, 1]  # one heartbeat at a time, until the other ended
    assert claim.finished_by_other is not None
    mine = RunReport(workflow=plan.name, run_id=RUN)
    state = claim.finished_by_other.mirror(mine)
    assert state.is_completed()
    assert mine.status == "completed"
    assert mine.message.startswith("attempt 1 of this run (on ")
    assert mine.message.endswith(
        "finished it, and its end is the run's (nothing ran twice): 3 done"
    )


def test_a_failed_end_of_the_live_attempt_is_mirrored_as_failed(
    plan: Plan, settings: Settings
) -> None:
    earlier = earlier_attempt(plan, settings)
    report = RunReport(workflow=plan.name, run_id=RUN, status="failed", message="boom")
    sleep, _ = sleeps(lambda: earlier.finish(report))

    claim = claim_run(StoreOpener(settings), RUN, plan, attempt=2, settings=settings, sleep=sleep)

    assert claim.finished_by_other is not None
    assert claim.finished_by_other.mirror(RunReport(workflow="x", run_id=RUN)).is_failed()


def test_a_live_attempt_that_stops_beating_is_taken_over(plan: Plan, settings: Settings) -> None:
    earlier = earlier_attempt(plan, settings)
    sleep, slept = sleeps(lambda: age(earlier, 30))

    claim = claim_run(StoreOpener(settings), RUN, plan, attempt=2, settings=settings, sleep=sleep)

    assert slept == [1]
    assert claim.finished_by_other is None
    assert set(claim.reuse) == {"counted"}


def test_a_retry_of_a_finished_run_resumes_without_waiting(plan: Plan, settings: Settings) -> None:
    earlier = earlier_attempt(plan, settings)
    earlier.finish(RunReport(workflow=plan.name, run_id=RUN, status="failed", message="flaky"))
    sleep, slept = sleeps()

    claim = claim_run(StoreOpener(settings), RUN, plan, attempt=2, settings=settings, sleep=sleep)

    assert slept == []
    assert set(claim.reuse) == {"counted"}


def test_an_attempt_writes_its_end_only_while_the_record_names_it(
    plan: Plan, settings: Settings
) -> None:
    first = earlier_attempt(plan, settings, attempt=1)
    assert still_ours(first, settings)

    second = earlier_attempt(plan, settings, attempt=2)  # took the run over

    assert not still_ours(first, settings)
    assert still_ours(second, settings)


def test_a_heartbeat_is_stale_after_six_missed_beats() -> None:
    now = datetime.now(UTC)
    fresh = {"heartbeat_at": (now - timedelta(seconds=50)).isoformat()}
    old = {"heartbeat_at": (now - timedelta(seconds=70)).isoformat()}

    assert not is_stale(fresh, 10)
    assert is_stale(old, 10)
    assert is_stale({"heartbeat_at": "not a time"}, 10)


def test_a_stale_copy_stops_beating_and_ends_as_the_attempt_that_took_over(
    plan: Plan, settings: Settings
) -> None:
    stale = earlier_attempt(plan, settings, attempt=1)
    owner = earlier_attempt(plan, settings, attempt=2)  # took the run over meanwhile
    store = stale.open_store()

    stale.heartbeat()  # back in touch with the store: it must not write over the owner

    assert stale.superseded
    assert store.get_state(run_key(RUN))["attempt"] == 2  # type: ignore[index]
    done = RunReport(workflow=plan.name, run_id=RUN, status="completed", message="all 3")
    sleep, slept = sleeps(lambda: owner.finish(done))
    mine = RunReport(workflow=plan.name, run_id=RUN, status="failed", message="stale view")

    state = end_when_superseded(stale, mine, settings, sleep=sleep)

    assert slept == [1]  # it waited for the owner to end
    assert state is not None and state.is_completed()
    assert mine.status == "completed"
    assert mine.message.endswith("(nothing ran twice): all 3")
    assert store.get_state(run_key(RUN))["status"] == "completed"  # type: ignore[index]


def test_the_attempt_that_owns_the_run_writes_its_own_end(plan: Plan, settings: Settings) -> None:
    owner = earlier_attempt(plan, settings, attempt=1)
    report = RunReport(workflow=plan.name, run_id=RUN, status="completed")

    assert end_when_superseded(owner, report, settings) is None


def test_a_record_with_a_longer_heartbeat_is_judged_by_its_own() -> None:
    old = (datetime.now(UTC) - timedelta(seconds=100)).isoformat()

    assert is_stale({"heartbeat_at": old}, 10)
    assert not is_stale({"heartbeat_at": old, "heartbeat_seconds": 30}, 10)
