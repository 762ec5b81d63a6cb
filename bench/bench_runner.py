"""fetchflow's runner against a hand-written Prefect flow doing the same work.

In one process and one Prefect server (a temp ``PREFECT_HOME``), runs a workflow of N trivial
``template`` steps through :func:`fetchflow.runner.run_plan`, and a plain Prefect flow that
submits N trivial tasks on the same ``ThreadPoolTaskRunner`` with the same heartbeat setting
(off). Two shapes: independent steps, and a chain where each step reads the previous one.
Prints the medians and the ratio runner/hand-written (target <= 1.2).

    .venv/bin/python bench/bench_runner.py [--steps 30] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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


def hand_written_flows(steps: int) -> dict[str, Callable[[], object]]:
    """The plain Prefect flows: N submitted trivial tasks, independent and chained."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    options: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}

    @task(**options)
    def render(index: int) -> str:
        return f"step {index}"

    @task(**options)
    def append(previous: str) -> str:
        return previous + "+"

    def runner() -> ThreadPoolTaskRunner:  # type: ignore[type-arg]
        return ThreadPoolTaskRunner(max_workers=MAX_WORKERS)

    @flow(name="hand_fan", task_runner=runner(), persist_result=False)
    def fan() -> list[str]:
        futures = [render.submit(index) for index in range(steps)]
        return [future.result() for future in futures]

    @flow(name="hand_chain", task_runner=runner(), persist_result=False)
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
    from fetchflow.checking import check_file
    from fetchflow.runner import run_plan
    from fetchflow.settings import Settings
    from fetchflow.step import StepRegistry

    registry = StepRegistry.from_entry_points()
    settings = Settings(home=folder / "home", max_parallel_steps=MAX_WORKERS)
    runs: dict[str, Callable[[], object]] = {}
    for shape in ("fan", "chain"):
        file = folder / f"{shape}.yaml"
        file.write_text(workflow_text(steps, chain=shape == "chain"), encoding="utf-8")
        plan = check_file(file, registry)

        def run(plan: Any = plan) -> object:
            report = run_plan(plan, {}, settings=settings, drain=False, open_store=lambda: None)
            assert report.status == "completed", report.message
            return report

        runs[shape] = run
    return runs


def timed(body: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        body()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        quiet_prefect(folder / "prefect")
        started = time.perf_counter()
        hand = hand_written_flows(args.steps)
        ours = fetchflow_runs(args.steps, folder)
        for body in (*hand.values(), *ours.values()):
            body()  # warm-up: server start, flow registration, first imports
        print(f"warm-up (server start included): {time.perf_counter() - started:.1f} s")
        print(
            f"{args.steps} trivial steps, {args.repeat} runs each, {MAX_WORKERS} workers;"
            f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        for shape in ("fan", "chain"):
            hand_times: list[float] = []
            our_times: list[float] = []
            for _ in range(args.repeat):  # interleaved, so server noise hits both alike
                hand_times += timed(hand[shape], 1)
                our_times += timed(ours[shape], 1)
            hand_median, our_median = statistics.median(hand_times), statistics.median(our_times)
            ratio = our_median / hand_median
            verdict = "ok" if ratio <= TARGET_RATIO else f"over the {TARGET_RATIO} target"
            print(
                f"{shape:<6} hand-written median {hand_median:6.3f} s (min {min(hand_times):6.3f})"
                f"   run_plan median {our_median:6.3f} s (min {min(our_times):6.3f})"
                f"   ratio of medians {ratio:4.2f} ({verdict}),"
                f" of minimums {min(our_times) / min(hand_times):4.2f}"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
