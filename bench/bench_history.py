"""How long ``fetchflow runs`` takes with many run records in the store, as a user runs it.

Writes N runs (default 1000) the way runs write them (``run.json``, three step results with
two image records, two kept images each) into a local store, and with ``--s3`` into a real
``rclone serve s3`` store too, then times:

- ``fetchflow runs`` as a subprocess (interpreter start-up included; the default 20 newest);
- ``list_runs`` in-process: one listing, every ``run.json`` read (16 threads, then 1 thread
  for the ratio), the 20 shown runs' step documents read;
- ``python -c "import fetchflow.settings"``, the floor of any command reading settings.

    .venv/bin/python bench/bench_history.py [--runs 1000] [--repeat 7] [--s3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fetchflow.run.history import list_runs  # noqa: E402
from fetchflow.settings import Settings  # noqa: E402
from fetchflow.storage import AssetStore, open_store  # noqa: E402

TARGET_SECONDS = 1.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(run_id: str, step: str, n: int) -> dict[str, object]:
    sha = f"{abs(hash((run_id, step, n))):064x}"[-64:]
    return {
        "id": sha[:16],
        "file_name": f"{step}-{n}.png",
        "file_size": 54_000,
        "file_type": "image/png",
        "width": 1024,
        "height": 768,
        "sha256": sha,
        "storage_uri": f"file:///nowhere/{sha}.png",
        "file_url": f"file:///nowhere/{sha}.png",
        "step_id": step,
        "run_id": run_id,
        "cost_usd": 0.04,
    }


def fill(store: AssetStore, runs: int) -> None:
    """``runs`` runs as ``Checkpoints`` writes them (same keys, same shapes)."""
    for number in range(runs):
        run_id = f"{number:08d}-0000-4000-8000-000000000000"
        started = T0 + timedelta(minutes=(number * 7919) % runs)  # shuffled start times
        for step in ("hero", "thumbs", "handoff"):
            output: object = (
                "a hand-off note"
                if step == "handoff"
                else [record(run_id, step, n) for n in (1, 2)]
            )
            store.put_state(
                f"runs/{run_id}/steps/{step}.json",
                {"kind": "step", "step_id": step, "status": "completed", "output": output},
            )
        for n in (1, 2):
            store.put_state(
                f"runs/{run_id}/kept/hero/{n:032x}.json",
                {"kind": "kept", "item": record(run_id, "hero", n)},
            )
        store.put_state(
            f"runs/{run_id}/run.json",
            {
                "kind": "run",
                "run_id": run_id,
                "workflow": f"flow{number % 5}",
                "file": "flows/x.yaml",
                "inputs": {"product": "mug"},
                "status": "completed",
                "message": "3 step(s) completed",
                "attempt": 1,
                "host": "bench",
                "started_at": started.isoformat(),
                "heartbeat_at": (started + timedelta(seconds=3)).isoformat(),
                "ended_at": (started + timedelta(seconds=3)).isoformat(),
            },
        )


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    action()  # warm-up, untimed
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def report(label: str, times: list[float], *, target: float | None = None) -> float:
    median, best = statistics.median(times), min(times)
    line = f"{label:<44} median {median * 1000:8.1f} ms   min {best * 1000:8.1f} ms"
    if target is not None:
        line += f"   median/target {median / target:4.2f}"
    print(line)
    return median


@contextlib.contextmanager
def rclone_store(folder: Path) -> Iterator[tuple[AssetStore, dict[str, str]]]:
    from storage.conftest import ACCESS_KEY, BUCKET, SECRET_KEY, running_rclone

    with running_rclone(folder) as server:
        env = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(folder / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"),
            "FETCHFLOW_STORE": f"s3://{BUCKET}/bench",
        }
        os.environ.update(env)
        yield (
            open_store(
                Settings(_env_file=None, home=folder / "home", store=env["FETCHFLOW_STORE"])
            ),
            env,
        )


def measure(name: str, store: AssetStore, env: dict[str, str], args: argparse.Namespace) -> None:
    python = sys.executable
    command = [python, "-m", "fetchflow.cli", "runs"]
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}

    def cli() -> None:
        subprocess.run(command, env=full_env, check=True, capture_output=True)

    print(f"-- {name}: {args.runs} runs ({args.runs * 6} state documents)")
    report("fetchflow runs (subprocess, 20 shown)", timed(cli, args.repeat), target=TARGET_SECONDS)
    pooled = report("list_runs, 16 threads", timed(lambda: list_runs(store), args.repeat))
    serial = report("list_runs, 1 thread", timed(lambda: list_runs(store, threads=1), args.repeat))
    print(f"{'ratio 16 threads / 1 thread':<44} {pooled / serial:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--s3", action="store_true", help="also a real rclone S3 store")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        report(
            'python -c "import fetchflow.settings"',
            timed(
                lambda: subprocess.run(
                    [sys.executable, "-c", "import fetchflow.settings"], cwd=REPO, check=True
                ),
                args.repeat,
            ),
        )
        env = {"FETCHFLOW_HOME": str(folder / "home"), "FETCHFLOW_STORE": str(folder / "store")}
        local = open_store(
            Settings(_env_file=None, home=folder / "home", store=env["FETCHFLOW_STORE"])
        )
        fill(local, args.runs)
        measure("local store", local, env, args)
        if args.s3:
            with rclone_store(folder) as (s3, s3_env):
                fill(s3, args.runs)
                measure("S3 store (rclone serve s3 on 127.0.0.1)", s3, s3_env, args)


if __name__ == "__main__":
    main()
