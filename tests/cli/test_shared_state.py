"""Run state lives in the shared store: a run killed on one machine resumes on another.

Two ``FETCHFLOW_HOME`` folders stand for two machines; they share only the S3 store, a real
``rclone serve s3`` over HTTP. Runs go through the real command (``python -m fetchflow.cli
run``) against the fake Gemini server (one call per image), in their own process group, so
SIGKILL takes the whole run down the way a lost machine does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage.conftest import ACCESS_KEY, BUCKET, SECRET_KEY, RcloneS3, running_rclone
from test_bad_input_catalogue import Sandbox, fake_gemini, fake_openai, probe_dir, sandbox  # noqa: F401

DATA = Path(__file__).resolve().parents[1] / "data" / "shared_state"
KILLED = DATA / "killed.yaml"
PREFIX = "team/prod"


@pytest.fixture
def rclone(tmp_path: Path) -> Iterator[RcloneS3]:
    with running_rclone(tmp_path) as server:
        yield server


def machine(box: Sandbox, server: RcloneS3, name: str) -> dict[str, str]:
    """The environment of one machine: its own home, the shared S3 store."""
    env = dict(box.env)
    env.update(
        FETCHFLOW_HOME=str(box.tmp / name),
        FETCHFLOW_STORE=f"s3://{BUCKET}/{PREFIX}",
        AWS_ENDPOINT_URL=server.endpoint,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(box.tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(box.tmp / "no-aws-credentials"),
        # A step's calls one at a time: the scripted answers meet them in index order.
        FETCHFLOW_PROVIDER_CONCURRENCY="1",
    )
    return env


def start(env: dict[str, str], box: Sandbox, prefect_api: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fetchflow.cli", "run", *args],
        env={**env, "PREFECT_API_URL": prefect_api},
        cwd=box.tmp / "cwd",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        start_new_session=True,  # its own process group: killpg is a lost machine
    )


def state(server: RcloneS3, pattern: str) -> list[Path]:
    """State documents in the shared store (``runs/*/run.json``, ...)."""
    return sorted((server.data_dir / BUCKET / PREFIX).glob(pattern))


def wait_until(check: object, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 180
    while not check():  # type: ignore[operator]
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run ended before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def seeds(box: Sandbox) -> list[int]:
    return [int(r.json["generationConfig"]["seed"]) for r in box.gemini.requests if r.json]


def images(server: RcloneS3) -> list[Path]:
    return sorted((server.data_dir / BUCKET / PREFIX).rglob("*.png"))


@pytest.mark.prefect
@pytest.mark.parametrize(
    ("signum", "made_again"),
    [
        # The image in flight finishes and is kept: only the last one is missing.
        pytest.param(signal.SIGINT, [9], id="sigint"),
        # The process dies with the call in flight: that image is made again, nothing else.
        pytest.param(signal.SIGKILL, [8, 9], id="sigkill"),
    ],
)
def test_a_run_stopped_on_one_machine_resumes_on_another_without_paying_twice(
    sandbox: Sandbox,  # noqa: F811
    rclone: RcloneS3,
    prefect_api: str,
    signum: int,
    made_again: list[int],
) -> None:
    gemini = sandbox.gemini
    # first (seed 1) and hero's first image (seed 7) answer at once; the second is slow.
    gemini.queue(gemini.answer, gemini.answer)
    gemini.queue_slow(20.0)
    one = machine(sandbox, rclone, "machine-a")
    process = start(one, sandbox, prefect_api, str(KILLED))

    # Killed once hero's first image is recorded and its second call is in flight.
    wait_until(lambda: len(gemini.requests) >= 3, process, "the third call")
    wait_until(lambda: state(rclone, "runs/*/kept/hero/*.json"), process, "a kept image")
    if signum == signal.SIGKILL:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signum)
    process.communicate(timeout=120)

    # Everything the run knew is in the store, written as it happened.
    (record_path,) = state(rclone, "runs/*/run.json")
    run_id = record_path.parent.name
    record = json.loads(record_path.read_text("utf-8"))
    expected_status = "running" if signum == signal.SIGKILL else "interrupted"
    assert (record["workflow"], record["status"]) == ("killed_mid_run", expected_status)
    first = json.loads(state(rclone, f"runs/{run_id}/steps/first.json")[0].read_text("utf-8"))
    assert first["status"] == "completed"
    assert len(state(rclone, f"runs/{run_id}/kept/hero/*.json")) == 3 - len(made_again)
    paid = images(rclone)
    assert not (sandbox.tmp / "machine-b").exists()

    # Another machine: its own home, nothing but the shared store.
    calls_before = len(gemini.requests)
    two = machine(sandbox, rclone, "machine-b")
    resumed = start(two, sandbox, prefect_api, str(KILLED), "--resume", run_id, "--json")
    out, err = resumed.communicate(timeout=240)

    assert resumed.returncode == 0, err
    assert seeds(sandbox)[calls_before:] == made_again  # nothing done is asked for again
    document = json.loads(out)
    assert document["status"] == "completed"
    assert document["steps"]["first"]["reused"] == f"reused from run {run_id}"
    hero = document["steps"]["hero"]["output"]
    assert [image["index"] for image in hero] == [0, 1, 2]
    assert [image["seed"] for image in hero] == [7, 8, 9]
    assert document["steps"]["note"]["output"] == "made: 3"
    new_record = json.loads(state(rclone, f"runs/{document['run_id']}/run.json")[0].read_text())
    assert (new_record["status"], new_record["resumed_from"]) == ("completed", run_id)
    # Every image paid for before the stop is in the result; none is stored twice.
    paid_uris = {
        f"s3://{BUCKET}/{p.relative_to(rclone.data_dir / BUCKET).as_posix()}" for p in paid
    }
    outputs = hero + document["steps"]["first"]["output"]
    assert paid_uris <= {image["storage_uri"] for image in outputs}
    assert len(images(rclone)) == 1 + 3
    assert (sandbox.tmp / "machine-b" / "runs").exists() is False  # nothing kept locally


@pytest.mark.prefect
def test_a_cached_request_made_on_one_machine_is_a_hit_on_another(
    sandbox: Sandbox,  # noqa: F811
    rclone: RcloneS3,
    prefect_api: str,
) -> None:
    flow = str(DATA / "cached.yaml")
    one = start(machine(sandbox, rclone, "machine-a"), sandbox, prefect_api, flow, "--json")
    out, err = one.communicate(timeout=240)
    assert one.returncode == 0, err
    first = json.loads(out)
    assert len(sandbox.gemini.requests) == 1

    two = start(machine(sandbox, rclone, "machine-b"), sandbox, prefect_api, flow, "--json")
    out, err = two.communicate(timeout=240)

    assert two.returncode == 0, err
    second = json.loads(out)
    assert len(sandbox.gemini.requests) == 1  # the second machine asked nobody
    hit = second["steps"]["hero"]
    assert hit["reused"] == f"cache hit (made by run {first['run_id']})"
    assert hit["output"][0]["storage_uri"] == first["steps"]["hero"]["output"][0]["storage_uri"]
    assert len(state(rclone, "cache/*.json")) == 1
    assert not (sandbox.tmp / "machine-b" / "cache").exists()
