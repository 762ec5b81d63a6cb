"""fetchflow's runner against a hand-written Prefect flow doing the same work.

In one process and one Prefect server (a temp ``PREFECT_HOME``), runs a workflow of N
trivial ``template`` steps through :func:`fetchflow.orchestration.runner.run_plan`, and a
plain Prefect flow that submits N trivial tasks on the same ``ThreadPoolTaskRunner`` with
the same heartbeat setting (off). Two shapes: independent steps, and a chain where each step
reads the previous one. Prints the medians and the ratio runner/hand-written (target <=
1.2).

.venv/bin/python bench/bench_runner.py [--steps 30] [--repeat 7]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.2
MAX_WORKERS = 8  # fetchflow's default max_parallel_steps


def workflow_text(steps: int, *, chain: bool) -> str:
    """N template steps: independent, or each reading the previous one's output."""
    lines = [f"name: bench_{'chain' if chain else 'fan'}", "steps:"]
    for index in range(steps):
        text = f"<< s{index - 1}.output >>+" if chain and index else f"step {index}"
        lines += [f"  - id: s{index}", "    type: template", f'    template: "{text}"']
    return "\n".join(lines) + "\n"


def quiet_prefect(home: Path) -> None:
    """A fresh Prefect home and a quiet console; must happen before Prefect is imported."""
    for name in [name for name in os.environ if name.startswith("PREFECT_")]:
        del os.environ[name]
    os.environ.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
            "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "CRITICAL",
            "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "CRITICAL",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        }
    )


def hand_written_flows(steps: int, tags: tuple[str, ...] = ()) -> dict[str, Callable[[], object]]:
    """The plain Prefect flows: N submitted trivial tasks, independent and chained.

    ``tags`` as fetchflow gives each task its step type: a tagged task run asks the server
    for tag concurrency slots (two API writes per task run), an untagged one does not.
    """
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    options: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, "tags": tags}
    suffix = "_tagged" if tags else ""

    @task(**options)
    def render(index: int) -> str:
        return f"step {index}"

    @task(**options)
    def append(previous: str) -> str:
        return previous + "+"

    def runner() -> ThreadPoolTaskRunner:  # type: ignore[type-arg]
        return ThreadPoolTaskRunner(max_workers=MAX_WORKERS)

    @flow(name="hand_fan" + suffix, task_runner=runner(), persist_result=False)
    def fan() -> list[str]:
        futures = [render.submit(index) for index in range(steps)]
        return [future.result() for future in futures]

    @flow(name="hand_chain" + suffix, task_runner=runner(), persist_result=False)
    def chain() -> str:
        future = render.submit(0)
        for _ in range(1, steps):
            future = append.submit(future)
        return future.result()

    def without_heartbeat(body: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                return body()

        return run

    return {"fan": without_heartbeat(fan), "chain": without_heartbeat(chain)}


def fetchflow_runs(steps: int, folder: Path) -> dict[str, Callable[[], object]]:
    """run_plan on the generated workflows (drain off: the hand-written flows do not drain)."""
    from fetchflow.orchestration.runner import run_plan
    from fetchflow.registry import StepRegistry
    from fetchflow.settings import Settings
    from fetchflow.workflow.checking import check_file

    registry = StepRegistry.from_entry_points()
    settings = Settings(home=folder / "home", max_parallel_steps=MAX_WORKERS)
    runs: dict[str, Callable[[], object]] = {}
    for shape in ("fan", "chain"):
        file = folder / f"{shape}.yaml"
        file.write_text(workflow_text(steps, chain=shape == "chain"), encoding="utf-8")
        plan = check_file(file, registry)

        def run(plan: Any = plan) -> object:
            report = run_plan(plan, {}, settings=settings, drain=False)
            assert report.status == "completed", report.message
            return report

        runs[shape] = run
    return runs


class RetryCounter(logging.Handler):
    """Counts the Prefect client's retries (it logs each one at DEBUG before sleeping).

    The embedded server's SQLite takes one writer at a time; when it is busy, an API call
    gets a 503 and the client sleeps ~2 s before trying again. That hits hand-written flows
    and fetchflow runs alike and swamps a 0.5 s run, so runs that waited are reported apart.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retryable" in record.getMessage():
            self.count += 1

    @classmethod
    def install(cls) -> RetryCounter:
        counter = cls()
        client_logger = logging.getLogger("prefect.client")
        client_logger.setLevel(logging.DEBUG)
        client_logger.addHandler(counter)
        return counter


@dataclass
class Timings:
    """Wall times of one variant, and which runs waited for a client retry."""

    all: list[float] = field(default_factory=list)
    clean: list[float] = field(default_factory=list)

    def add(self, body: Callable[[], object], settle: float, retries: RetryCounter) -> None:
        time.sleep(settle)  # let the server finish writing the previous run
        before = retries.count
        started = time.perf_counter()
        body()
        seconds = time.perf_counter() - started
        self.all.append(seconds)
        if retries.count == before:
            self.clean.append(seconds)

    def line(self, label: str) -> str:
        clean = statistics.median(self.clean) if self.clean else float("nan")
        return (
            f"{label:<13} median {statistics.median(self.all):6.3f} s  min {min(self.all):6.3f} s"
            f"  median without server retries {clean:6.3f} s"
            f" ({len(self.clean)}/{len(self.all)} runs)"
        )


def ratio_line(ours: list[float], hand: list[float]) -> str:
    if not ours or not hand:
        return "n/a"
    ratio = statistics.median(ours) / statistics.median(hand)
    verdict = "ok" if ratio <= TARGET_RATIO else f"over {TARGET_RATIO}"
    return f"{ratio:4.2f} ({verdict})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--settle", type=float, default=1.5, help="pause before each timed run (seconds)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        quiet_prefect(folder / "prefect")
        started = time.perf_counter()
        hand = hand_written_flows(args.steps)
        tagged = hand_written_flows(args.steps, tags=("template",))
        ours = fetchflow_runs(args.steps, folder)
        for body in (*hand.values(), *tagged.values(), *ours.values()):
            body()  # warm-up: server start, flow registration, first imports
        print(f"warm-up (server start included): {time.perf_counter() - started:.1f} s")
        print(
            f"{args.steps} trivial steps, {args.repeat} runs each, {MAX_WORKERS} workers;"
            f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores,"
            f" {args.settle} s pause before each run"
        )
        retries = RetryCounter.install()
        for shape in ("fan", "chain"):
            hand_times, tagged_times, our_times = Timings(), Timings(), Timings()
            for _ in range(args.repeat):  # interleaved, so server noise hits all alike
                hand_times.add(hand[shape], args.settle, retries)
                tagged_times.add(tagged[shape], args.settle, retries)
                our_times.add(ours[shape], args.settle, retries)
            print(f"{shape}:")
            print("  " + hand_times.line("hand-written"))
            print("  " + tagged_times.line("hand + tags"))
            print("  " + our_times.line("run_plan"))
            print(
                f"  run_plan/hand-written: medians {ratio_line(our_times.all, hand_times.all)}"
                f", without server retries {ratio_line(our_times.clean, hand_times.clean)}"
                f", minimums {min(our_times.all) / min(hand_times.all):4.2f}"
            )
            print(
                "  run_plan/hand-written with the same tags: medians "
                f"{ratio_line(our_times.all, tagged_times.all)}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
