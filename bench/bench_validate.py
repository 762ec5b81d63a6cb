"""How long ``fetchflow validate`` takes on a 500-step workflow, as a user runs it.

Runs the command as a subprocess (interpreter start-up included, as the user feels it) and
prints the median and minimum wall time and their ratio to the 0.3 s target, next to the
floors no CLI can beat: ``python -c pass`` and ``python -c "import pydantic"``.

``--per-step 1000,5000`` measures how the cost grows instead: for each size, the CLI's
median CPU time less that of a 1-step file (start-up), in µs per step, and the ratio of
the largest size's µs per step to the smallest's (1.0 is linear; the cyclic garbage
collector made it 1.6 before validation ran with it off). The same is measured in-process
with the collector on, for comparison.

    .venv/bin/python bench/bench_validate.py [--steps 500] [--repeat 15]
    .venv/bin/python bench/bench_validate.py --per-step 1000,5000 [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from generate import write

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 0.3


def wall_times(command: list[str], repeat: int) -> list[float]:
    """Wall time of ``repeat`` runs of ``command`` (after one untimed warm-up run)."""
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def report(label: str, times: list[float], *, target: float | None = None) -> None:
    median, best = statistics.median(times), min(times)
    line = f"{label:<34} median {median * 1000:7.1f} ms   min {best * 1000:7.1f} ms"
    if target is not None:
        line += f"   median/target {median / target:4.2f}   min/target {best / target:4.2f}"
    print(line)


def cpu_times(command: list[str], repeat: int) -> list[float]:
    """CPU seconds (user + system) of ``repeat`` runs of ``command``, after a warm-up run.

    CPU time, not wall time: on a shared machine the per-step figures are otherwise noise.
    """
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    times = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times


def in_process(path: Path, repeat: int, *, collector: bool) -> float:
    """Median CPU seconds of ``check_file`` in this process, the cyclic collector on or off."""
    sys.path.insert(0, str(REPO))
    from fetchflow.cli.common import step_types
    from fetchflow.cli.validate import no_cyclic_gc
    from fetchflow.workflow.checking import check_file

    registry = step_types()
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        if collector:
            check_file(path, registry)
        else:
            with no_cyclic_gc():
                check_file(path, registry)
        times.append(time.process_time() - started)
    return statistics.median(times)


def per_step(sizes: list[int], repeat: int) -> None:
    """µs per step of ``fetchflow validate`` at each size, and how it grows."""
    python = sys.executable
    print(
        f"validate CPU time per step at {', '.join(map(str, sizes))} steps, median of {repeat};"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as folder:
        one = write(Path(folder) / "one.yaml", 1)
        base = statistics.median(
            cpu_times([python, "-m", "fetchflow.cli", "validate", str(one)], repeat)
        )
        cli: dict[int, float] = {}
        with_gc: dict[int, float] = {}
        without_gc: dict[int, float] = {}
        for size in sizes:
            workflow = write(Path(folder) / f"bench{size}.yaml", size)
            command = [python, "-m", "fetchflow.cli", "validate", str(workflow)]
            median = statistics.median(cpu_times(command, repeat))
            cli[size] = (median - base) / size * 1e6
            with_gc[size] = in_process(workflow, repeat, collector=True) / size * 1e6
            without_gc[size] = in_process(workflow, repeat, collector=False) / size * 1e6
            print(
                f"{size:>6} steps: CLI {cli[size]:6.1f} µs/step (start-up {base * 1000:.0f} ms"
                f" taken off)   in-process: collector on {with_gc[size]:6.1f}, off"
                f" {without_gc[size]:6.1f} µs/step"
            )
    small, large = sizes[0], sizes[-1]
    print(
        f"growth {large}/{small} (µs per step, 1.0 = linear): CLI {cli[large] / cli[small]:.2f}"
        f"   collector on {with_gc[large] / with_gc[small]:.2f}"
        f"   collector off {without_gc[large] / without_gc[small]:.2f}"
    )
    print(
        f"collector on / CLI at {large} steps: {with_gc[large] / cli[large]:.2f}"
        "  (what the CLI saves)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--per-step", help="comma-separated sizes: µs per step at each (e.g. 1000,5000)"
    )
    args = parser.parse_args()
    if args.per_step:
        per_step(sorted(int(size) for size in args.per_step.split(",")), args.repeat)
        return

    with tempfile.TemporaryDirectory() as folder:
        workflow = write(Path(folder) / "bench.yaml", args.steps)
        python = sys.executable
        print(
            f"{args.steps}-step workflow, {args.repeat} runs each, target {TARGET_SECONDS} s;"
            f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        report("python -c pass", wall_times([python, "-c", "pass"], args.repeat))
        report(
            'python -c "import pydantic"',
            wall_times([python, "-c", "import pydantic"], args.repeat),
        )
        validate = [python, "-m", "fetchflow.cli", "validate", str(workflow)]
        report(
            f"fetchflow validate ({args.steps} steps)",
            wall_times(validate, args.repeat),
            target=TARGET_SECONDS,
        )
        one_step = write(Path(folder) / "one.yaml", 1)
        report(
            "fetchflow validate (1 step)",
            wall_times([python, "-m", "fetchflow.cli", "validate", str(one_step)], args.repeat),
            target=TARGET_SECONDS,
        )


if __name__ == "__main__":
    main()
