"""image_generation workflows run as real Prefect flow runs against the fake providers.

Few and slow on purpose (the session's Prefect server, ``prefect_api``): what only a real run
shows. A downstream template renders ``<< hero.output.0.file_url >>`` from real records; the
"no image provider configured" notice is logged once although two image steps run at once;
and a key the provider rejects appears neither in the run's report nor in what Prefect
stored of it. Everything else about the step is in ``test_image_generation_providers.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import fixtures
from fakes.fake_gemini import FakeGemini
from fakes.fake_openai import FakeOpenAI
from fakes.provenance import same_picture

from fetchflow.registry import StepRegistry
from fetchflow.run.report import RunReport
from fetchflow.settings import Settings
from fetchflow.storage import LocalStore
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs
from steps.image_generation import PREVIEW_NOTICE

pytestmark = pytest.mark.prefect

fake_openai = fixtures.fake_openai
fake_gemini = fixtures.fake_gemini

FLOWS = Path(__file__).resolve().parents[1] / "data" / "image_flows"
REGISTRY = StepRegistry.from_entry_points()
KEY = "sk-test-SECRET-0123456789"
PROVIDER_VARIABLES = fixtures.PROVIDER_VARIABLES


def clean_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No provider key, base URL or FETCHFLOW_* setting from the machine; no ``.env`` read."""
    for name in list(os.environ):
        if name in PROVIDER_VARIABLES or name.startswith("FETCHFLOW_"):
            monkeypatch.delenv(name)
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(home)


def run_workflow(name: str, home: Path) -> tuple[RunReport, LocalStore]:
    """Check ``image_flows/<name>.yaml`` and run it as a flow run; the store it wrote to."""
    from fetchflow.orchestration.runner import run_plan

    plan = check_file(FLOWS / f"{name}.yaml", REGISTRY)
    settings = Settings(home=home, store=str(home / "assets"))
    report = run_plan(plan, resolve_inputs(plan.header, {}), settings=settings, drain=False)
    return report, LocalStore(home / "assets", spool_dir=settings.spool_dir)


def prefect_logs(run_id: str) -> list[Any]:
    """Every log line Prefect stored for a flow run (its task runs' included), oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    # run_plan(drain=False) returns before its log lines are sent: send them now.
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        # Prefect 3.8.8's client sends limit/sort as null when not given (the server says
        # 422): pass them.
        return client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)])),
            limit=200,
            offset=0,
            sort=LogSort.TIMESTAMP_ASC,
        )


def test_records_flow_downstream_and_the_files_are_in_the_store(
    prefect_api: str,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clean_environment(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)

    report, store = run_workflow("openai_hero", tmp_path / "home")

    assert report.status == "completed", report.message
    records = report.steps["hero"].output
    assert isinstance(records, list) and len(records) == 3
    assert report.steps["handoff"].output == f"Hero: {records[0]['file_url']}"
    [request] = fake_openai.requests
    assert request.json is not None and (request.json["n"], request.json["size"]) == (
        3,
        "1536x1024",
    )
    body = fake_openai.answer(request).body
    assert isinstance(body, dict)
    for record, item in zip(records, body["data"], strict=True):
        data = store.read(record["storage_uri"])
        same_picture(data, base64.b64decode(item["b64_json"]))
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert (record["width"], record["height"], record["model"]) == (1536, 1024, "gpt-image-2")
        assert record["run_id"] == report.run_id
    assert KEY not in json.dumps(report.to_json())
    assert all(KEY not in log.message for log in prefect_logs(report.run_id))


def test_auto_without_keys_says_preview_once_for_two_parallel_steps(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_environment(monkeypatch, tmp_path / "home")

    report, store = run_workflow("auto_two_steps", tmp_path / "home")

    assert report.status == "completed", report.message
    for step_id in ("hero", "detail"):
        [record] = report.steps[step_id].output  # type: ignore[misc]
        assert record["model"] == "preview" and record["provider"] == "preview"
        assert store.read(record["storage_uri"])
    notices = [log for log in prefect_logs(report.run_id) if log.message == PREVIEW_NOTICE]
    assert len(notices) == 1
    assert notices[0].task_run_id is not None  # in the step's own task run log


@dataclass(frozen=True)
class RejectedRun:
    """A run whose provider rejected the key and echoed it back in the error."""

    report: RunReport
    logs: list[Any]
    flow_run_message: str
    requests: int


@pytest.fixture(scope="module")
def rejected_run(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> RejectedRun:
    from prefect.client.orchestration import get_client

    home = tmp_path_factory.mktemp("rejected") / "home"
    with pytest.MonkeyPatch.context() as monkeypatch, FakeOpenAI() as fake:
        clean_environment(monkeypatch, home)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        fake.queue_invalid_api_key()  # "Incorrect API key provided: <the whole key>"
        report, _ = run_workflow("rejected_key", home)
        logs = prefect_logs(report.run_id)
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(uuid.UUID(report.run_id))
        assert not fake.crashes, fake.crashes
        return RejectedRun(report, logs, flow_run.state.message or "", len(fake.requests))


def test_a_rejected_key_fails_the_run_with_the_key_masked(rejected_run: RejectedRun) -> None:
    report = rejected_run.report
    assert report.status == "failed"
    assert rejected_run.requests == 1  # not retried: a rejected key cannot succeed
    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.attempts == 1
    assert hero.error is not None
    assert "401 invalid_api_key: the API key was rejected: Incorrect API key provided: " in (
        hero.error
    )
    assert "[redacted]" in hero.error
    assert report.steps["handoff"].status == "skipped"
    assert KEY not in json.dumps(report.to_json())
    assert KEY not in (report.message or "") and KEY not in rejected_run.flow_run_message
    assert any("the API key was rejected" in log.message for log in rejected_run.logs)


def test_a_rejected_key_is_not_in_the_logs_prefect_stored(rejected_run: RejectedRun) -> None:
    # Prefect logs the failure with its traceback (the SDK's exception chained as the cause):
    # the check below reads it, it is not empty.
    assert any("Traceback (most recent call last)" in log.message for log in rejected_run.logs)
    leaked = [log.message for log in rejected_run.logs if KEY in log.message]
    assert leaked == []


@pytest.mark.parametrize(
    ("name", "status"),
    [("gemini_partial", "partial"), ("gemini_partial_terminate", "failed")],
)
def test_images_paid_for_before_a_failure_stay_in_the_run(
    name: str,
    status: str,
    prefect_api: str,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clean_environment(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    # One call at a time, so the stop meets the third (concurrent: test_concurrent_calls.py).
    monkeypatch.setenv("FETCHFLOW_PROVIDER_CONCURRENCY", "1")
    fake_gemini.queue(fake_gemini.answer, fake_gemini.answer)
    fake_gemini.queue_safety_stop()

    report, store = run_workflow(name, tmp_path / "home")

    assert report.status == status
    hero = report.steps["hero"]
    assert hero.status == "failed"
    assert hero.attempts == 1  # retries: 2, but a retry would pay for the kept images again
    assert hero.error is not None and "2 of 3 images were made and kept" in hero.error
    kept = hero.output
    assert isinstance(kept, list) and [record["index"] for record in kept] == [0, 1]
    for record in kept:  # the records are real: their bytes are in the store
        data = store.read(record["storage_uri"])
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert len(fake_gemini.requests) == 3
    assert json.loads(json.dumps(report.to_json()))["steps"]["hero"]["output"] == kept
    if status == "partial":
        assert report.steps["note"].status == "skipped"
        assert report.steps["other"].output == "unrelated branch"
    else:
        assert 'step "hero" failed' in report.message
