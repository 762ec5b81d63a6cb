"""Crash recovery at scale: 30 runs over 3 process workers, one worker's machine lost mid-run.

Issue 13's "Done when": ``fetchflow server --database`` on a throwaway PostgreSQL cluster
(tests/orchestration/postgres.py), one process work pool, ``fetchflow deploy`` of
``tests/data/recovery/bench_cranes.yaml`` (two Gemini images, then two more that need them),
3 ``prefect worker start --pool NAME --limit L`` processes, ``fetchflow recover --watch``,
and a fake Gemini (tests/steps/fakes) that answers every call after a delay and counts them,
each image unique to its call (so an image stored twice is two objects). Once worker 1 runs at
least one run whose first step is recorded, its whole process tree is SIGKILLed (a lost
machine: tests/orchestration/lost_machine.py) and the store's checkpoints are read at that
instant (the work already done). Prints: runs Completed exactly once; provider calls for work
already done (images recorded before the kill, called again after it); duplicate objects;
``database is locked`` lines in the server log; the time from the kill to each lost run's
Crashed, Running again and Completed.

``FETCHFLOW_HEARTBEAT_SECONDS=2`` (not 10) keeps it short: a run is dead after 12 s without a
heartbeat, marked within 12 s + ``--every`` 1 s; ``--pending-seconds 180`` for the runs the
lost worker had claimed but not started (a Pending run has no heartbeat: 20 s declared live
runs dead on a loaded machine, where a worker took over 20 s to start a run; the longest
Pending of the benchmark is printed).

    .venv/bin/python bench/bench_pool_recovery.py --runs 30 --workers 3 --limit 3
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "orchestration"), str(REPO / "tests" / "steps")]

from fakes import RecordedRequest, Reply  # noqa: E402
from fakes.fake_gemini import FakeGemini  # noqa: E402
from lost_machine import kill_machine, process_tree  # noqa: E402
from PIL import Image  # noqa: E402
from postgres import postgres_cluster  # noqa: E402

from fetchflow.orchestration.server import running_server  # noqa: E402
from fetchflow.settings import Settings  # noqa: E402

WORKFLOW = REPO / "tests" / "data" / "recovery" / "bench_cranes.yaml"
DEPLOYMENT = "cranes_bench/cranes_bench"
POOL = "bench-recovery"
HEARTBEAT = 2
SEEDS = {"first": 7, "second": 11}


@dataclass(frozen=True)
class Call:
    at: float
    run: str
    step: str
    index: int


class CountingGemini(FakeGemini):
    """Answers every call after ``delay`` s with an image unique to the call."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.calls: list[Call] = []
        self._numbers = itertools.count()

    def answer(self, request: RecordedRequest) -> Reply:
        reply = super().answer(request)
        body = request.json or {}
        prompt = " ".join(
            str(part.get("text", ""))
            for content in body.get("contents", [])
            for part in content.get("parts", [])
        )
        seed = int(body.get("generationConfig", {}).get("seed", 0))
        step = "first" if prompt.startswith("first") else "second"
        run = prompt.rsplit("run ", 1)[-1].strip()
        self.calls.append(Call(time.time(), run, step, seed - SEEDS[step]))
        number = next(self._numbers)
        try:
            part = reply.body["candidates"][0]["content"]["parts"][0]  # type: ignore[index]
            image = Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"])))
            image = image.convert("RGB")
            digest = hashlib.sha256(f"{number}".encode()).digest()
            image.putpixel((0, 0), (digest[0], digest[1], digest[2]))
            image.putpixel((1, 0), (number % 256, (number // 256) % 256, 7))
            out = io.BytesIO()
            image.save(out, "PNG")
            part["inlineData"]["data"] = base64.b64encode(out.getvalue()).decode()
        except (KeyError, IndexError, TypeError):
            pass  # an error reply: as it is
        return replace(reply, delay=self.delay)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait(check: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)
    return value


def flow_run_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"PREFECT__FLOW_RUN_ID="):
            return entry.split(b"=", 1)[1].decode()
    return None


def store_snapshot(store: Path) -> tuple[set[tuple[str, str, int]], dict[str, str]]:
    """The images recorded in the store's checkpoints: (run id, step, index), by step result
    and by kept item; and each run id's tag."""
    done: set[tuple[str, str, int]] = set()
    tags: dict[str, str] = {}
    runs = store / "runs"
    if not runs.is_dir():
        return done, tags
    for run in runs.iterdir():
        try:
            record = json.loads((run / "run.json").read_text())
            tags[run.name] = str(record.get("inputs", {}).get("tag"))
        except (OSError, ValueError):
            pass
        for path in list(run.glob("steps/*.json")) + list(run.glob("kept/*/*.json")):
            try:
                document = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if document.get("kind") == "step":
                items = document.get("output") or []
            else:
                items = [document.get("item")]
            step = document.get("step_id", path.parent.name)
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "index" in item:
                    done.add((run.name, str(step), int(item["index"])))
    return done, tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--limit", type=int, default=3, help="flow runs at once per worker")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per provider call")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--pending-seconds", type=float, default=180.0)
    options = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    store = root / "store"
    with postgres_cluster() as cluster, CountingGemini(options.delay) as gemini:
        database = cluster.create_database("prefect_bench", "prefect_bench", "bench-secret-pw")
        server_home = root / "server-home"
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FETCHFLOW_"))},
            "PYTHONPATH": str(REPO),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "fetchflow.cli", "server", "--port", str(free_port())],
            env={**base, "FETCHFLOW_HOME": str(server_home), "FETCHFLOW_DATABASE_URL": database},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            info = wait(
                lambda: running_server(Settings(home=server_home), timeout=2.0),
                180,
                "the server",
                every=0.5,
            )
            shared = {
                **base,
                "PREFECT_API_URL": info.api_url,
                "FETCHFLOW_STORE": str(store),
                "FETCHFLOW_HEARTBEAT_SECONDS": str(HEARTBEAT),
                "GEMINI_API_KEY": "gemini-bench-key",
                "GOOGLE_GEMINI_BASE_URL": gemini.base_url,
                "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
            }
            os.environ["PREFECT_API_URL"] = info.api_url
            from prefect.client.orchestration import get_client
            from prefect.client.schemas.actions import WorkPoolCreate
            from prefect.workers.process import ProcessWorker

            with get_client(sync_client=True) as client:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=POOL,
                        type="process",
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    ),
                    overwrite=True,
                )
            (root / "deployer").mkdir()
            deployed = subprocess.run(
                [sys.executable, "-m", "fetchflow.cli", "deploy", str(WORKFLOW), "--pool", POOL],
                env={**shared, "FETCHFLOW_HOME": str(root / "deployer" / "home")},
                cwd=root / "deployer",
                capture_output=True,
                text=True,
                check=False,
            )
            if deployed.returncode != 0:
                raise SystemExit(deployed.stderr)

            workers = []
            for number in range(1, options.workers + 1):
                folder = root / f"worker-{number}"
                folder.mkdir()
                log = (folder / "worker.log").open("wb")
                worker = subprocess.Popen(
                    [
                        *(str(Path(sys.executable).parent / "prefect"), "worker", "start"),
                        *("--pool", POOL, "--type", "process", "--limit", str(options.limit)),
                    ],
                    env={
                        **shared,
                        "FETCHFLOW_HOME": str(folder / "home"),
                        "PREFECT_HOME": str(folder / "prefect"),
                        "PREFECT_WORKER_QUERY_SECONDS": "1",
                    },
                    cwd=folder,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                workers.append((worker, folder / "worker.log"))
                processes.append(worker)
            for _, log_path in workers:
                wait(
                    lambda p=log_path: "started!" in p.read_text(errors="replace"), 120, "a worker"
                )

            recover_log = root / "recover.log"
            (root / "recover").mkdir()
            with recover_log.open("wb") as out:
                recover = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "fetchflow.cli", "recover", "--watch"),
                        *("--every", "1", "--pending-seconds", str(options.pending_seconds)),
                    ],
                    env={**shared, "FETCHFLOW_HOME": str(root / "recover" / "home")},
                    cwd=root / "recover",
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes.append(recover)

            started = time.time()
            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name(DEPLOYMENT)
                run_ids = [
                    str(
                        client.create_flow_run_from_deployment(
                            deployment.id, parameters={"tag": f"r{n:02d}"}
                        ).id
                    )
                    for n in range(options.runs)
                ]

            # Worker 1's machine dies once one of its runs has its first step recorded.
            victim, _ = workers[0]

            def mid_run() -> list[str]:
                mine = [flow_run_of(pid) for pid in process_tree(victim.pid)[1:]]
                ids = [run for run in mine if run]
                recorded = [run for run in ids if (store / "runs" / run / "steps").is_dir()]
                return ids if recorded else []

            lost = wait(mid_run, 300, "worker 1 to be mid-run", every=0.1)
            kill_machine(victim)
            killed_at = time.time()
            done_before, _ = store_snapshot(store)
            print(
                f"killed worker 1's machine {killed_at - started:.1f} s in; its runs: "
                f"{len(lost)}; images recorded in the store at that instant: {len(done_before)}",
                flush=True,
            )

            def all_final() -> list[Any]:
                with get_client(sync_client=True) as client:
                    runs = [client.read_flow_run(run_id) for run_id in run_ids]
                return runs if all(r.state and r.state.is_final() for r in runs) else []

            finals = wait(all_final, options.timeout, "every run to end", every=2.0)
            ended = time.time()
            with get_client(sync_client=True) as client:
                histories = {
                    run_id: sorted(client.read_flow_run_states(run_id), key=lambda s: s.timestamp)
                    for run_id in run_ids
                }
        finally:
            for process in reversed(processes):
                if process.poll() is None:
                    if process is processes[-1] and "recover" in str(process.args):
                        process.send_signal(signal.SIGINT)
                        try:
                            process.wait(20)
                            continue
                        except subprocess.TimeoutExpired:
                            pass
                    kill_machine(process)
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()

        # -- figures ---------------------------------------------------------------------
        completed_once = sum(
            1
            for run in finals
            if run.state.type.value == "COMPLETED"
            and [s.type.value for s in histories[str(run.id)]].count("COMPLETED") == 1
        )
        states = sorted({run.state.type.value for run in finals})
        _, tags = store_snapshot(store)
        tag_of = {tag: run_id for run_id, tag in tags.items()}
        after_kill = [call for call in gemini.calls if call.at > killed_at]
        redone = [
            call
            for call in after_kill
            if (tag_of.get(call.run), call.step, call.index) in done_before
        ]
        keys = [(c.run, c.step, c.index) for c in gemini.calls]
        repeats = len(keys) - len(set(keys))
        objects = [p for p in store.rglob("*.png") if "runs" not in p.parts]
        referenced: set[str] = set()
        for run_id in run_ids:
            for step in SEEDS:
                path = store / "runs" / run_id / "steps" / f"{step}.json"
                document = json.loads(path.read_text()) if path.exists() else {}
                for item in document.get("output") or []:
                    referenced.add(Path(str(item.get("storage_uri", ""))).name)
        duplicates = [p for p in objects if p.name not in referenced]
        locked = (
            (server_home / "server.log").read_text(errors="replace").count("database is locked")
        )
        recover_lines = [
            line
            for line in recover_log.read_text(errors="replace").splitlines()
            if line.startswith("crashed ")
        ]

        def first_after(history: list[Any], kind: str, after: float) -> float | None:
            for state in history:
                if state.type.value == kind and state.timestamp.timestamp() > after:
                    return float(state.timestamp.timestamp())
            return None

        crashed_after, running_after, completed_after = [], [], []
        for run_id in lost:
            history = histories.get(run_id, [])
            crashed = first_after(history, "CRASHED", killed_at)
            if crashed is None:
                continue
            crashed_after.append(crashed - killed_at)
            again = first_after(history, "RUNNING", crashed)
            if again is not None:
                running_after.append(again - killed_at)
            finished = first_after(history, "COMPLETED", crashed)
            if finished is not None:
                completed_after.append(finished - killed_at)

        def spread(values: list[float]) -> str:
            if not values:
                return "none"
            return (
                f"median {statistics.median(values):.1f} s, max {max(values):.1f} s "
                f"({len(values)} run(s))"
            )

        pending: list[float] = []
        for history in histories.values():
            for before, after in itertools.pairwise(history):
                if before.type.value == "PENDING" and after.type.value == "RUNNING":
                    pending.append((after.timestamp - before.timestamp).total_seconds())
        by_heartbeat = sum("no heartbeat" in line for line in recover_lines)
        window = 6 * HEARTBEAT
        print(
            "\n".join(
                [
                    f"runs: {options.runs} over {options.workers} process workers (limit "
                    f"{options.limit} each), fetchflow server on PostgreSQL, "
                    f"FETCHFLOW_HEARTBEAT_SECONDS={HEARTBEAT} (dead after {window} s), recover "
                    f"--watch --every 1; all ended in {ended - started:.0f} s",
                    f"Completed exactly once: {completed_once}/{options.runs} (final states: "
                    f"{', '.join(states)})",
                    f"runs on the lost machine: {len(lost)}; marked Crashed and rescheduled by "
                    f"recover: {len(recover_lines)} ({by_heartbeat} for a stale heartbeat, "
                    f"{len(recover_lines) - by_heartbeat} Pending too long)",
                    f"Pending -> Running of the runs started: {spread(pending)}",
                    f"provider calls: {len(gemini.calls)} for {len(set(keys))} images "
                    f"({options.runs * 4} wanted); calls repeated: {repeats} (in flight when the "
                    "machine died)",
                    f"provider calls for work already done: {len(redone)}",
                    f"image objects in the store: {len(objects)}; not in any run's output "
                    f"(duplicates): {len(duplicates)}",
                    f"'database is locked' in the server log: {locked}",
                    f"kill -> Crashed: {spread(crashed_after)}",
                    f"kill -> Running again: {spread(running_after)}",
                    f"kill -> Completed: {spread(completed_after)}",
                    f"(bound for kill -> Crashed: 6 x heartbeat + --every = {window + 1} s, plus "
                    "the time one look of recover takes on this machine)",
                ]
            ),
            flush=True,
        )
        for line in recover_lines:
            print(f"  recover: {line}", flush=True)


if __name__ == "__main__":
    main()
