"""``FETCHFLOW_TASK_RUNNER``: threads vs a local Dask cluster for N independent 1 s steps.

Each run is the real CLI (``python -m fetchflow.cli run FILE --json``) against one Prefect
server the benchmark starts (Prefect's test harness), so neither side pays Prefect's cold
start. The steps are ``whereami`` steps (tests/data/task_runners/fetchflow_whereami.py,
registered by entry point as in the tests) that sleep ``--seconds`` and say which process ran
them. Prints, per runner: the median wall time of ``--repeats`` runs, what the steps alone
need (``seconds x ceil(steps / FETCHFLOW_MAX_PARALLEL_STEPS)``), the overhead over that, how
many processes ran steps, the dask/threads ratio and the load average.

    .venv/bin/python bench/bench_task_runners.py --steps 8 --seconds 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import CLEAN_ENV, QUIET_PREFECT, write_dist_info  # noqa: E402

DATA = REPO / "tests" / "data" / "task_runners"


def workflow(folder: Path, steps: int, seconds: float) -> Path:
    lines = ["name: runner_bench", "steps:"]
    for n in range(steps):
        lines += [f"  - id: s{n}", "    type: whereami", f"    seconds: {seconds}"]
    path = folder / "runner_bench.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_once(file: Path, env: dict[str, str]) -> tuple[float, int]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "run", str(file), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout)
    pids = {step["output"]["pid"] for step in report["steps"].values()}
    return wall, len(pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=8, help="FETCHFLOW_MAX_PARALLEL_STEPS")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        site = folder / "site"
        write_dist_info(site, {"whereami": "fetchflow_whereami:WhereAmIStep"})
        file = workflow(folder, args.steps, args.seconds)
        for name in list(os.environ):
            if name.startswith("PREFECT_"):
                del os.environ[name]
        os.environ.update({**QUIET_PREFECT, "PREFECT_HOME": str(folder / "prefect")})
        with prefect_test_harness(server_startup_timeout=None):
            from prefect.settings import PREFECT_API_URL

            base = {
                **CLEAN_ENV,
                **QUIET_PREFECT,
                "PREFECT_API_URL": str(PREFECT_API_URL.value()),
                "PYTHONPATH": os.pathsep.join([str(site), str(DATA)]),
                "FETCHFLOW_HOME": str(folder / "home"),
                "FETCHFLOW_MAX_PARALLEL_STEPS": str(args.parallel),
            }
            ideal = args.seconds * math.ceil(args.steps / args.parallel)
            results: dict[str, float] = {}
            print(
                f"{args.steps} independent steps of {args.seconds:g} s, "
                f"FETCHFLOW_MAX_PARALLEL_STEPS={args.parallel}, {os.cpu_count()} cores; "
                f"the steps alone need {ideal:g} s"
            )
            for runner in ("threads", "dask"):
                env = {**base, "FETCHFLOW_TASK_RUNNER": runner}
                run_once(file, env)  # warm-up: imports, the server's first flow
                walls, processes = [], set()
                for _ in range(args.repeats):
                    wall, count = run_once(file, env)
                    walls.append(wall)
                    processes.add(count)
                median = statistics.median(walls)
                results[runner] = median
                print(
                    f"  {runner:8} median {median:6.2f} s  (runs: "
                    f"{', '.join(f'{w:.2f}' for w in walls)})  overhead {median - ideal:5.2f} s  "
                    f"step processes {sorted(processes)}"
                )
            print(f"  dask / threads wall time: {results['dask'] / results['threads']:.2f}")
            load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
            print(f"  load average: {load}")


if __name__ == "__main__":
    main()
