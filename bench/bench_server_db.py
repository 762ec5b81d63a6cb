"""``fetchflow server`` on SQLite vs PostgreSQL: start-up, and what a tag costs per task.

For each database: the server's cold start (fresh database, migrations) and warm start (same
database again), then a flow of N trivial tasks submitted at once, untagged and tagged with a
tag that has no limit (each tagged task run asks the server for a lease), median of R runs.
PostgreSQL is a throwaway cluster from Debian's binaries (tests/orchestration/postgres.py).

    .venv/bin/python bench/bench_server_db.py --tasks 30 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "orchestration")]

from postgres import postgres_cluster  # noqa: E402

from fetchflow.orchestration.server import running_server  # noqa: E402
from fetchflow.settings import Settings  # noqa: E402

FLOW = """
import sys, time
from prefect import flow, task

@task
def noop(n: int) -> int:
    return n

@flow
def many(count: int, tag: str) -> None:
    step = noop.with_options(tags=[tag]) if tag else noop
    for future in [step.submit(n) for n in range(count)]:
        future.result()

count, tag, repeat = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
many(count, tag)  # warm-up
for _ in range(repeat):
    started = time.perf_counter()
    many(count, tag)
    print(time.perf_counter() - started, flush=True)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(home: Path, database: str | None) -> tuple[subprocess.Popen[bytes], float, str]:
    env = {**os.environ, "FETCHFLOW_HOME": str(home), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "fetchflow.cli", "server", "--port", str(free_port())]
    started = time.monotonic()
    process = subprocess.Popen(
        command + (["--database", database] if database else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while (info := running_server(Settings(home=home))) is None:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        time.sleep(0.1)
    return process, time.monotonic() - started, info.api_url


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(60)


def flow_times(api_url: str, tasks: int, tag: str, repeat: int) -> list[float]:
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    }
    done = subprocess.run(
        [sys.executable, "-c", FLOW, str(tasks), tag, str(repeat)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(line) for line in done.stdout.split()]


def measure(name: str, home: Path, database: str | None, tasks: int, repeat: int) -> None:
    process, cold, _ = start(home, database)
    stop(process)
    process, warm, api_url = start(home, database)
    try:
        plain = statistics.median(flow_times(api_url, tasks, "", repeat))
        tagged = statistics.median(flow_times(api_url, tasks, "image_generation", repeat))
    finally:
        stop(process)
    print(
        f"{name:10} cold start {cold:5.1f} s  warm start {warm:5.1f} s  "
        f"{tasks} tasks: untagged {plain:5.2f} s, tagged (no limit) {tagged:5.2f} s "
        f"(x{tagged / plain:.2f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        measure("sqlite", Path(folder) / "sqlite", None, args.tasks, args.repeat)
        with postgres_cluster() as cluster:
            url = cluster.create_database("bench", "bench", "bench-password")
            measure("postgresql", Path(folder) / "pg", url, args.tasks, args.repeat)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
