"""How long ``fetchflow validate`` takes on a 500-step workflow, as a user runs it.

Runs the command as a subprocess (interpreter start-up included, as the user feels it) and
prints the median and minimum wall time and their ratio to the 0.3 s target, next to the
floors no CLI can beat: ``python -c pass`` and ``python -c "import pydantic"``.

    .venv/bin/python bench/bench_validate.py [--steps 500] [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

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
