"""Run-level fault injection: whole workflows as Prefect flow runs against faults.

The fake OpenAI and Gemini servers (``tests/steps/fakes``) answer 429 with Retry-After, 500s,
slow answers, moderation blocks, garbage bytes and a refused third call; a real S3 server
(``rclone serve s3``) is stopped in the middle of a run and started again on the same port
with the same data. For each fault: the run ends as its steps' ``on_failure`` says, no image
the provider made (and billed) is lost, and no object is written twice.

Waits are kept short with ``provider_max_delay_seconds``; the sleeps are real. The step-level
behaviour of each fault is in ``tests/steps/imaging/providers/test_provider_faults.py``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fetchflow.registry import StepRegistry
from fetchflow.run.report import RunReport, StepResult
from fetchflow.settings import Settings
from fetchflow.storage import LocalStore
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs
from fetchflow.workflow.plan import PlannedStep
from steps.imaging.provenance import GENERATED, Provenance, stamp

# The fake servers live in tests/steps/fakes, imported as ``fakes`` the way the step tests
# import them (tests/steps has no __init__.py: it would clash with the ``steps`` package).
_STEP_TESTS = str(Path(__file__).resolve().parents[1] / "steps")
if _STEP_TESTS not in sys.path:
    sys.path.insert(0, _STEP_TESTS)

from fakes import RecordedRequest, Reply, fixtures  # noqa: E402
from fakes.fake_gemini import FakeGemini  # noqa: E402
from fakes.fake_openai import FakeOpenAI  # noqa: E402
from storage.conftest import BUCKET, RcloneS3, running_rclone, use_test_aws  # noqa: E402

pytestmark = pytest.mark.prefect

fake_openai = fixtures.fake_openai
fake_gemini = fixtures.fake_gemini

FAULTS = Path(__file__).resolve().parents[1] / "data" / "faults"
REGISTRY = StepRegistry.from_entry_points()
OPENAI_KEY = "sk-test-SECRET-runfaults-0123456789"
GEMINI_KEY = "AIzaTestSECRETrunfaults0123456789"
PREFIX = "prefix"
#: Tries per provider call in these runs (the 500 case sends exactly this many).
ATTEMPTS = 3


@pytest.fixture(autouse=True)
def clean_environment(
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Only this test's keys and endpoints: nothing of the machine's, no ``.env`` read."""
    scrub_environ(monkeypatch)
    use_test_aws(monkeypatch, tmp_path)
    # The image steps' own settings: few tries, short waits.
    monkeypatch.setenv("FETCHFLOW_PROVIDER_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setenv("FETCHFLOW_PROVIDER_MAX_DELAY_SECONDS", "0.3")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def openai(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The fake OpenAI server, reached through the SDK's own variables."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    return fake_openai


@pytest.fixture
def gemini(fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    """The fake Gemini server, reached through the SDK's own variables."""
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake_gemini.base_url)
    # A step's calls one at a time, so the scripted answers meet them in index order
    # (concurrent calls: tests/steps/test_concurrent_calls.py).
    monkeypatch.setenv("FETCHFLOW_PROVIDER_CONCURRENCY", "1")
    return fake_gemini


@pytest.fixture
def rclone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RcloneS3]:
    """A real ``rclone serve s3`` with an empty bucket, reached through ``AWS_ENDPOINT_URL``."""
    with running_rclone(tmp_path) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        yield server


# -- running a workflow ----------------------------------------------------------------------


@dataclass
class StopWhen:
    """A run observer that calls ``action`` once, when step ``step_id`` has completed.

    ``step_finished`` is called by the run's scheduling loop before it submits the steps
    that were waiting on that one: what ``action`` breaks is broken for all of them.
    """

    step_id: str
    action: Callable[[], None]
    finished: list[str] = field(default_factory=list)

    def run_started(self, report: RunReport) -> None:
        pass

    def step_started(self, step: PlannedStep, attempt: int) -> None:
        pass

    def step_finished(self, step: PlannedStep, result: StepResult) -> None:
        self.finished.append(step.id)
        if step.id == self.step_id and result.status == "completed":
            self.action()


def settings_for(home: Path, store: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=home,
        store=store,
        upload_attempts=1,
    )


def run(name: str, settings: Settings, observer: StopWhen | None = None) -> RunReport:
    """Check ``tests/data/faults/<name>.yaml`` and run it as one Prefect flow run."""
    from fetchflow.orchestration.runner import run_plan

    plan = check_file(FAULTS / f"{name}.yaml", REGISTRY)
    return run_plan(
        plan, resolve_inputs(plan.header, {}), settings=settings, observer=observer, drain=False
    )


def local_run(name: str, home: Path) -> tuple[RunReport, LocalStore]:
    """Run a workflow storing to a local folder; the store it wrote to."""
    settings = settings_for(home, str(home / "assets"))
    report = run(name, settings)
    return report, LocalStore(home / "assets", spool_dir=settings.spool_dir)


def stored(store: LocalStore) -> list[Path]:
    """The asset files in a local store (the run's state documents left out)."""
    state = (store.root / "runs", store.root / "cache")
    return sorted(
        p
        for p in store.root.rglob("*")
        if p.is_file() and not any(p.is_relative_to(folder) for folder in state)
    )


def spooled(home: Path) -> list[Path]:
    spool = home / "spool"
    return sorted(p for p in spool.iterdir() if p.is_file()) if spool.is_dir() else []


def sent_images(fake: FakeOpenAI | FakeGemini, request: RecordedRequest) -> list[bytes]:
    """The image bytes the fake answered ``request`` with (its answers are deterministic),
    as the store keeps them: with the generation's provenance in place of their metadata
    (what that packet holds is read back by exiftool in tests/cli/test_provenance_run.py)."""
    body: Any = fake.answer(request).body
    if isinstance(fake, FakeOpenAI):
        model = str((request.json or {}).get("model"))
        sent = [base64.b64decode(item["b64_json"]) for item in body["data"]]
    else:
        model = request.path.split("/models/")[1].split(":")[0]
        parts = body["candidates"][0]["content"]["parts"]
        sent = [base64.b64decode(part["inlineData"]["data"]) for part in parts]
    origin = Provenance("created", GENERATED, model)
    return [stamp(data, "image/png", origin) for data in sent]


def status(report: RunReport) -> dict[str, str]:
    return {step_id: result.status for step_id, result in report.steps.items()}


# -- provider faults through a whole run -------------------------------------------------------


def test_a_429_with_retry_after_then_success_completes_the_run_with_two_requests(
    prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.queue_rate_limit(retry_after="0.2")

    started = time.monotonic()
    report, store = local_run("provider_terminate", tmp_path / "home")

    assert report.status == "completed", report.message
    assert time.monotonic() - started >= 0.2
    assert len(openai.requests) == 2
    [record] = report.steps["hero"].output  # type: ignore[misc]
    assert report.steps["hero"].attempts == 1  # retried inside the step, not by Prefect
    assert stored(store) == [store.path_of(record["storage_uri"])]
    assert store.read(record["storage_uri"]) == sent_images(openai, openai.requests[1])[0]
    assert report.steps["note"].output == f"hero: {record['file_url']}"


@pytest.mark.parametrize("policy", ["terminate", "continue"])
def test_server_errors_on_every_attempt_fail_the_step_and_the_policy_decides(
    policy: str, prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    for _ in range(ATTEMPTS):
        openai.queue_server_error(500)

    report, store = local_run(f"provider_{policy}", tmp_path / "home")

    assert len(openai.requests) == ATTEMPTS
    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.output is None
    assert hero.error is not None
    assert f"(gave up after {ATTEMPTS} attempts in" in hero.error and "last: 500)" in hero.error
    assert report.steps["other"].status == "completed"
    assert stored(store) == [] and spooled(tmp_path / "home") == []
    if policy == "terminate":
        assert report.status == "failed"
        # The step is named once: its error's own 'step "hero": ' is not repeated.
        said = hero.error.removeprefix('step "hero": ')
        assert said != hero.error and report.message == f'step "hero" failed: {said}'
        assert report.steps["note"].status == "skipped"
        assert report.steps["note"].error == (
            'not started: step "hero" failed and its on_failure is terminate'
        )
    else:
        assert report.status == "partial" and report.exit_code == 0
        assert report.message.startswith("1 step(s) failed (hero) and 1 were skipped")
        assert report.steps["note"].status == "skipped"
        assert report.steps["note"].error == 'skipped: upstream step "hero" failed'
    assert OPENAI_KEY not in str(report.to_json()) + report.message


@pytest.mark.parametrize("policy", ["terminate", "continue"])
def test_a_provider_slower_than_the_step_timeout_fails_the_step(
    policy: str, prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.queue_slow(3)  # the step allows 2 s

    report, store = local_run(f"provider_{policy}", tmp_path / "home")

    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.error is not None
    assert hero.error.startswith("timed out"), hero.error
    assert len(openai.requests) == 1  # a timed-out step is not retried (retries: 0)
    assert report.status == ("failed" if policy == "terminate" else "partial")
    assert report.steps["other"].status == "completed"
    assert report.steps["note"].status == "skipped"
    assert stored(store) == []  # the answer that came too late was not kept


def test_a_billable_step_that_timed_out_is_not_retried_by_its_retries(
    prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.queue_slow(3)  # the step allows 2 s; retries: 2
    openai.queue_slow(3)
    openai.queue_slow(3)

    report, store = local_run("provider_timeout_retries", tmp_path / "home")

    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.error is not None
    assert hero.error.startswith("timed out"), hero.error
    assert hero.attempts == 1
    assert len(openai.requests) == 1  # the call in flight may be billed: never a second one
    assert stored(store) == []


def test_a_step_timeout_ends_the_step_while_the_provider_still_hangs(
    prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.queue_slow(6)  # the step allows 2 s

    report, _ = local_run("provider_terminate", tmp_path / "home")

    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.error is not None
    assert hero.error.startswith("timed out"), hero.error
    assert hero.seconds < 4, f"the 2 s step ran {hero.seconds:.1f} s"


def test_a_moderation_block_is_one_request_never_retried_and_named_in_the_report(
    prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.queue_moderation_blocked(("violence",))

    report, store = local_run("provider_continue", tmp_path / "home")

    assert len(openai.requests) == 1
    hero = report.steps["hero"]
    assert (hero.status, hero.attempts) == ("failed", 1)
    assert hero.error is not None
    assert hero.error.startswith('step "hero": ')
    assert "400 moderation_blocked: the safety system refused the prompt" in hero.error
    assert "gave up" not in hero.error and "\n  hint: " in hero.error
    assert report.status == "partial"
    assert status(report) == {"hero": "failed", "note": "skipped", "other": "completed"}
    assert stored(store) == []


def test_garbage_bytes_then_an_image_store_only_the_image(
    prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    openai.queue_garbage_image()

    report, store = local_run("provider_terminate", tmp_path / "home")

    assert report.status == "completed", report.message
    assert len(openai.requests) == 2  # an unusable answer is retried like a 5xx
    [record] = report.steps["hero"].output  # type: ignore[misc]
    [good] = sent_images(openai, openai.requests[1])
    assert stored(store) == [store.path_of(record["storage_uri"])]
    assert stored(store)[0].read_bytes() == good
    assert spooled(tmp_path / "home") == []


def test_garbage_bytes_on_every_attempt_store_nothing_and_fail_the_step(
    prefect_api: str, openai: FakeOpenAI, tmp_path: Path
) -> None:
    for _ in range(ATTEMPTS):
        openai.queue_garbage_image()

    report, store = local_run("provider_continue", tmp_path / "home")

    assert len(openai.requests) == ATTEMPTS
    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.output is None and hero.error is not None
    assert "image 1 of 1 is not a PNG, JPEG, WEBP or GIF image" in hero.error
    assert f"gave up after {ATTEMPTS} attempts" in hero.error
    assert report.status == "partial"
    assert status(report) == {"hero": "failed", "note": "skipped", "other": "completed"}
    assert stored(store) == [] and spooled(tmp_path / "home") == []


@pytest.mark.parametrize("policy", ["terminate", "continue"])
def test_a_refused_third_call_keeps_the_two_paid_images_in_the_report_and_the_store(
    policy: str, prefect_api: str, gemini: FakeGemini, tmp_path: Path
) -> None:
    gemini.queue(gemini.answer, gemini.answer)
    gemini.queue_safety_stop()

    report, store = local_run(f"gemini_partial_{policy}", tmp_path / "home")

    assert len(gemini.requests) == 3  # neither the refusal nor the step (retries: 2) repeated
    hero = report.steps["hero"]
    assert (hero.status, hero.attempts) == ("failed", 1)
    assert hero.error is not None and "2 of 3 images were made and kept" in hero.error
    records = hero.output
    assert isinstance(records, list) and [r["index"] for r in records] == [0, 1]
    assert sorted(stored(store)) == sorted(store.path_of(r["storage_uri"]) for r in records)
    for record, request in zip(records, gemini.requests[:2], strict=True):
        [sent] = sent_images(gemini, request)
        assert store.read(record["storage_uri"]) == sent
        assert record["sha256"] == hashlib.sha256(sent).hexdigest()
    assert report.steps["note"].status == "skipped"
    assert report.steps["other"].status == "completed"
    if policy == "terminate":
        assert report.status == "failed"
        assert report.message.startswith('step "hero" failed: ')
    else:
        assert report.status == "partial"
    assert report.to_json()["steps"]["hero"]["output"] == records  # type: ignore[index]


# -- a stop request (Ctrl-C) in the middle of a provider's retries ------------------------------


@pytest.fixture
def stop_flag() -> Iterator[None]:
    from fetchflow.interrupt import clear_stop

    clear_stop()
    yield
    clear_stop()


@pytest.mark.usefixtures("stop_flag")
def test_a_stop_requested_while_a_call_fails_starts_no_retry_of_it(
    prefect_api: str, gemini: FakeGemini, tmp_path: Path
) -> None:
    import threading

    from fakes.fake_gemini import google_error_body

    from fetchflow.interrupt import request_stop

    # The first call is answered, slowly, with a 500 the retry loop would retry; the stop
    # is requested while it is in flight.
    gemini.queue(lambda _: Reply(500, google_error_body(500, "INTERNAL", "try again"), delay=1.0))

    def stop_once_called() -> None:
        deadline = time.monotonic() + 120
        while not gemini.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        request_stop()

    stopper = threading.Thread(target=stop_once_called, daemon=True)
    stopper.start()
    report, store = local_run("gemini_partial_terminate", tmp_path / "home")
    stopper.join()

    assert len(gemini.requests) == 1  # neither the retry loop nor the step's retries: 2
    assert report.status == "interrupted" and report.exit_code == 130
    hero = report.steps["hero"]
    assert (hero.status, hero.attempts, hero.output) == ("failed", 1, None)
    assert hero.error == (
        'step "hero": interrupted: image 1 of 3 not started\n'
        "  hint: resume the run with fetchflow run FILE --resume RUN_ID"
    )
    assert report.steps["note"].status == "skipped"
    assert stored(store) == []


# -- S3: a real server, stopped mid-run --------------------------------------------------------


def s3_settings(home: Path) -> Settings:
    return settings_for(home, f"s3://{BUCKET}/{PREFIX}")


@dataclass(frozen=True)
class Object:
    """One object as rclone keeps it: a file under the bucket folder."""

    inode: int
    mtime_ns: int
    sha256: str


def objects(server: RcloneS3) -> dict[str, Object]:
    """Every asset object under the prefix (preflight probes and run state left out)."""
    root = server.data_dir / BUCKET
    found = {}
    for path in sorted((root / PREFIX).rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_file() and not _probe_or_state(key):
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[key] = Object(stat.st_ino, stat.st_mtime_ns, digest)
    return found


def listed(server: RcloneS3) -> dict[str, Any]:
    """``LastModified`` of every object under the prefix, as the S3 API lists them."""
    import boto3

    client = boto3.client("s3", endpoint_url=server.endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    return {
        item["Key"]: item["LastModified"]
        for page in pages
        for item in page.get("Contents", [])
        if not _probe_or_state(item["Key"])
    }


def _probe_or_state(key: str) -> bool:
    return any(f"/{part}/" in key for part in (".fetchflow-preflight", "runs", "cache"))


def key_of(record: dict[str, Any]) -> str:
    return str(record["storage_uri"]).removeprefix(f"s3://{BUCKET}/")


@pytest.mark.s3server
def test_running_the_same_workflow_twice_writes_no_object_again(
    prefect_api: str, openai: FakeOpenAI, rclone: RcloneS3, tmp_path: Path
) -> None:
    settings = s3_settings(tmp_path / "home")

    first = run("s3_two_steps_terminate", settings)

    assert first.status == "completed", first.message
    assert len(openai.requests) == 2
    records = [r for step in ("first", "second") for r in first.steps[step].output]  # type: ignore[attr-defined]
    sent = [image for request in openai.requests for image in sent_images(openai, request)]
    assert len(set(sent)) == 4  # four different images, so four objects
    before = objects(rclone)
    assert sorted(before) == sorted(key_of(r) for r in records)
    for record, data in zip(records, sent, strict=True):
        assert before[key_of(record)].sha256 == hashlib.sha256(data).hexdigest()
    listed_before = listed(rclone)
    # The fake answers the same request with the same bytes: the re-run asks the same.
    assert sent_images(openai, openai.requests[0]) == sent[:2]
    time.sleep(1.1)  # LastModified has one-second resolution: a rewrite would show

    again = run("s3_two_steps_terminate", settings)

    assert again.status == "completed", again.message
    assert len(openai.requests) == 4  # no cache: the provider was asked (and paid) again...
    assert [r.json for r in openai.requests[2:]] == [r.json for r in openai.requests[:2]]
    assert objects(rclone) == before  # ...but no object was written again
    assert listed(rclone) == listed_before
    again_records = [r for step in ("first", "second") for r in again.steps[step].output]  # type: ignore[attr-defined]
    assert [key_of(r) for r in again_records] == [key_of(r) for r in records]
    assert {r["run_id"] for r in again_records} == {again.run_id}


def push(home: Path) -> subprocess.CompletedProcess[str]:
    """``python -m fetchflow.cli push`` as a user runs it, configured by the environment."""
    env = {
        **os.environ,
        "FETCHFLOW_HOME": str(home),
        "FETCHFLOW_STORE": f"s3://{BUCKET}/{PREFIX}",
    }
    return subprocess.run(
        [sys.executable, "-m", "fetchflow.cli", "push"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.s3server
@pytest.mark.parametrize("policy", ["terminate", "continue"])
def test_s3_down_between_two_image_steps_spools_then_push_lands_each_object_once(
    policy: str, prefect_api: str, openai: FakeOpenAI, rclone: RcloneS3, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    observer = StopWhen("first", rclone.stop)

    report = run(f"s3_two_steps_{policy}", s3_settings(home), observer)

    assert observer.finished[:1] == ["first"]
    assert len(openai.requests) == 2  # the second step's call was made (and paid for)
    assert report.steps["first"].status == "completed"
    first_keys = sorted(key_of(r) for r in report.steps["first"].output)  # type: ignore[attr-defined]
    first_objects = objects(rclone)
    assert sorted(first_objects) == first_keys
    second = report.steps["second"]
    assert second.status == "failed" and second.output is None and second.error is not None
    assert "cannot reach the endpoint" in second.error
    assert f"the bytes are kept in {home.resolve() / 'spool'}/" in second.error
    assert "fetchflow push" in second.error
    assert report.steps["handoff"].status == "skipped"
    if policy == "terminate":
        assert report.status == "failed"
        said = second.error.removeprefix('step "second": ')
        assert said != second.error and report.message == f'step "second" failed: {said}'
    else:
        assert report.status == "partial"
    paid = sent_images(openai, openai.requests[1])
    kept = {p.read_bytes() for p in spooled(home) if p.suffix == ".png"}
    assert kept and kept <= set(paid)  # what is spooled is exactly what the fake sent
    assert paid[0] in kept
    spooled_path = str(home.resolve() / "spool" / f"{hashlib.sha256(paid[0]).hexdigest()}.png")
    assert spooled_path in second.error

    rclone.start()  # same port, same data folder
    pushed = push(home)

    assert pushed.returncode == 0, pushed.stderr
    assert f"pushed {len(kept)} file(s) from" in pushed.stdout
    assert spooled(home) == []
    after = objects(rclone)
    assert {key: after[key] for key in first_keys} == first_objects  # untouched
    new = {key: obj for key, obj in after.items() if key not in first_objects}
    assert sorted(obj.sha256 for obj in new.values()) == sorted(
        hashlib.sha256(data).hexdigest() for data in kept
    )
    assert all(key.startswith(f"{PREFIX}/") for key in new)

    again = push(home)  # nothing left: nothing written
    assert again.returncode == 0, again.stderr
    assert "pushed 0 file(s)" in again.stdout
    assert objects(rclone) == after


@pytest.mark.s3server
def test_every_paid_image_of_a_call_whose_upload_failed_is_spooled(
    prefect_api: str, openai: FakeOpenAI, rclone: RcloneS3, tmp_path: Path
) -> None:
    home = tmp_path / "home"

    report = run("s3_two_steps_continue", s3_settings(home), StopWhen("first", rclone.stop))

    assert report.steps["second"].status == "failed"
    paid = sent_images(openai, openai.requests[1])
    assert len(paid) == 2
    assert sorted(p.read_bytes() for p in spooled(home) if p.suffix == ".png") == sorted(paid)


@pytest.mark.s3server
def test_s3_down_after_the_first_of_three_calls_keeps_the_uploaded_record(
    prefect_api: str, gemini: FakeGemini, rclone: RcloneS3, tmp_path: Path
) -> None:
    def stop_then_answer(request: RecordedRequest) -> Reply:
        rclone.stop()
        return gemini.answer(request)

    gemini.queue(gemini.answer, stop_then_answer)

    report = run("s3_gemini_three", s3_settings(tmp_path / "home"))

    assert len(gemini.requests) == 2
    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.error is not None
    assert report.status == "partial"
    [only] = objects(rclone).values()
    [record] = hero.output  # type: ignore[misc]
    assert record["sha256"] == only.sha256 and record["index"] == 0
    assert "1 of 3 images were made and kept" in hero.error


@pytest.mark.s3server
def test_a_step_whose_paid_image_could_not_be_uploaded_is_not_retried(
    prefect_api: str, openai: FakeOpenAI, rclone: RcloneS3, tmp_path: Path
) -> None:
    def stop_then_answer(request: RecordedRequest) -> Reply:
        rclone.stop()
        return openai.answer(request)

    openai.queue(stop_then_answer)
    home = tmp_path / "home"

    report = run("s3_retried_step", s3_settings(home))

    hero = report.steps["hero"]
    assert hero.status == "failed" and hero.error is not None
    assert "the bytes are kept in" in hero.error
    [paid] = sent_images(openai, openai.requests[0])
    assert [p.read_bytes() for p in spooled(home) if p.suffix == ".png"] == [paid]
    assert len(openai.requests) == 1  # paid once
