"""``fetchflow runs``, ``show``, ``export``, ``run --out`` and ``--version`` through the real
command (``python -m fetchflow.cli`` in a subprocess).

Runs are made for real where that is cheap (the offline ``preview`` model against the
session's Prefect server), or written with :class:`Checkpoints` into the store for what a
real run cannot be made to do on cue (a dead run, thirty runs, a corrupted file). Every
reading command is checked not to import Prefect (the catalogue's ``sitecustomize`` probe).
Times are shown in the machine's zone: the subprocesses run with ``TZ=UTC``.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from PIL import Image
from storage.conftest import ACCESS_KEY, BUCKET, SECRET_KEY, RcloneS3, running_rclone
from test_bad_input_catalogue import (  # noqa: F401
    Outcome,
    Sandbox,
    fake_gemini,
    fake_openai,
    probe_dir,
    sandbox,
)

from fetchflow.registry import StepRegistry
from fetchflow.run.checkpoints import Checkpoints, run_key
from fetchflow.run.report import StepResult
from fetchflow.run.reuse import step_fingerprint
from fetchflow.storage import AssetStore, LocalStore
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.plan import Plan

REPO = Path(__file__).resolve().parents[2]
THUMBNAILS = REPO / "flows" / "thumbnails.yaml"
HELLO = REPO / "flows" / "hello.yaml"
PARTIAL = REPO / "tests" / "data" / "history" / "partial.yaml"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HEADER = "RUN            WORKFLOW    STATUS"
HOST = socket.gethostname()


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:  # noqa: F811
    """The catalogue's sandbox (fake providers, import probe, own home and store), in UTC."""
    sandbox.env["TZ"] = "UTC"
    return sandbox


def cli(box: Sandbox, *args: str) -> Outcome:
    """A reading command: no traceback, and Prefect never imported."""
    outcome = box.fetchflow(*args)
    assert "Traceback" not in outcome.stderr
    assert "internal error" not in outcome.stderr
    assert outcome.prefect_modules == [], args
    return outcome


def local_store(box: Sandbox) -> LocalStore:
    return LocalStore(box.store, spool_dir=box.tmp / "spool")


def plan_of(path: Path) -> Plan:
    return check_file(path, StepRegistry.from_entry_points())


def png(width: int, height: int, color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def image(
    store: AssetStore, run_id: str, step_id: str, name: str, color: str, usd: float | None
) -> dict[str, object]:
    """A real stored image and the record an image step outputs for it."""
    stored = store.put(
        png(4, 3, color),
        file_name=name,
        file_type="image/png",
        step_id=step_id,
        run_id=run_id,
        width=4,
        height=3,
        model="preview",
    )
    record: dict[str, object] = stored.model_dump(mode="json")
    if usd is not None:
        record["cost_usd"] = usd
    return record


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def put_run(
    store: AssetStore,
    plan: Plan,
    run_id: str,
    *,
    status: str,
    started: datetime,
    ended: datetime | None = None,
    heartbeat: datetime | None = None,
    message: str = "",
    steps: Mapping[str, StepResult] | None = None,
    kept: Mapping[str, list[dict[str, object]]] | None = None,
) -> None:
    """A run's state as a run writes it (Checkpoints), at the times given."""
    checkpoints = Checkpoints(lambda: store, run_id)
    fingerprints = {sid: step_fingerprint(step) for sid, step in plan.steps.items()}
    checkpoints.start(plan, {"product": "vase"}, fingerprints)
    for step_id, result in (steps or {}).items():
        checkpoints.step(step_id, result, fingerprints[step_id])
    for step_id, items in (kept or {}).items():
        for item in items:
            checkpoints.keep(step_id, item)
    store.put_state(
        run_key(run_id),
        {
            **checkpoints.record,
            "status": status,
            "message": message,
            "started_at": iso(started),
            "ended_at": iso(ended),
            "heartbeat_at": iso(heartbeat or ended or started),
        },
    )


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def path_of(store: LocalStore, record: Mapping[str, object]) -> str:
    return str(store.path_of(str(record["storage_uri"])))


@pytest.fixture
def history(box: Sandbox) -> dict[str, object]:
    """Five runs of two workflows: completed (2 images, $0.08), failed (one kept image of a
    step cut short), dead (running, no heartbeat for hours), live (running, beating now),
    and a hello run; plus the records, by run."""
    store = local_store(box)
    thumbnails, hello = plan_of(THUMBNAILS), plan_of(HELLO)
    done = [
        image(store, "run-completed", "hero", f"hero-{n}.png", c, 0.04)
        for n, c in ((1, "red"), (2, "blue"))
    ]
    put_run(
        store,
        thumbnails,
        "run-completed",
        status="completed",
        message="3 step(s) completed",
        started=T0,
        ended=T0 + timedelta(seconds=4.25),
        steps={
            "hero": StepResult("completed", done, seconds=3.5, attempts=1),
            "thumbs": StepResult("completed", [], seconds=0.5, attempts=1),
            "handoff": StepResult("completed", "line one\nline two", seconds=0.01, attempts=1),
        },
    )
    cut = image(store, "run-failed", "hero", "hero-1.png", "green", 0.04)
    put_run(
        store,
        thumbnails,
        "run-failed",
        status="failed",
        message='step "hero" failed: the provider is down',
        started=T0 + timedelta(minutes=1),
        ended=T0 + timedelta(minutes=3, seconds=5),
        steps={
            "hero": StepResult(
                "failed",
                None,
                error="the provider is down\n  hint: try later",
                seconds=124.0,
                attempts=2,
            ),
            "thumbs": StepResult("skipped", error='skipped: upstream step "hero" failed'),
            "handoff": StepResult("skipped", error='skipped: upstream step "thumbs" failed'),
        },
        kept={"hero": [cut]},
    )
    dead = image(store, "run-dead", "hero", "hero-1.png", "white", 0.04)
    put_run(
        store,
        thumbnails,
        "run-dead",
        status="running",
        started=T0 + timedelta(minutes=2),
        heartbeat=T0 + timedelta(minutes=7, seconds=50),
        kept={"hero": [dead]},
    )
    put_run(
        store,
        hello,
        "run-hello",
        status="completed",
        message="3 step(s) completed",
        started=T0 + timedelta(minutes=3),
        ended=T0 + timedelta(minutes=3, seconds=1),
        steps={
            "brief": StepResult("completed", "Product shot of a vase.", seconds=0.01, attempts=1),
            "caption": StepResult("completed", "Meet the vase.", seconds=0.01, attempts=1),
            "handoff": StepResult("completed", "BRIEF: ...", seconds=0.01, attempts=1),
        },
    )
    live_start = datetime.now(UTC) - timedelta(hours=1)
    put_run(
        store,
        thumbnails,
        "run-live",
        status="running",
        started=live_start,
        heartbeat=datetime.now(UTC),
    )
    return {"store": store, "done": done, "cut": cut, "dead": dead, "live_start": live_start}


# -- --version -------------------------------------------------------------------------------


def test_version_names_fetchflow_and_prefect_from_the_package_metadata(box: Sandbox) -> None:
    outcome = cli(box, "--version")

    assert outcome.code == 0
    assert outcome.stdout == (
        f"fetchflow {version('fetchflow')} (Prefect {version('prefect')}, "
        f"Python {platform.python_version()})\n"
    )
    assert outcome.stderr == ""


# -- fetchflow runs --------------------------------------------------------------------------


def test_runs_lists_newest_first_with_status_duration_images_and_cost(
    box: Sandbox, history: dict[str, object]
) -> None:
    outcome = cli(box, "runs")

    live = history["live_start"]
    assert isinstance(live, datetime)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stderr == ""
    lines = outcome.stdout.splitlines()
    assert [columns(line) for line in lines] == [
        ["RUN", "WORKFLOW", "STATUS", "STARTED", "DURATION", "IMAGES", "COST"],
        [
            "run-live",
            "thumbnails",
            "running",
            live.strftime("%Y-%m-%d %H:%M:%S"),
            "1h 00m",
            "0",
            "—",
        ],
        ["run-hello", "hello", "completed", "2026-01-02 03:07:05", "1.0s", "0", "—"],
        # dead: its time is to its last heartbeat; its kept image counts, and was paid
        [
            "run-dead",
            "thumbnails",
            "dead (no heartbeat since 2026-01-02 03:11:55)",
            "2026-01-02 03:06:05",
            "5m 50s",
            "1",
            "$0.04",
        ],
        ["run-failed", "thumbnails", "failed", "2026-01-02 03:05:05", "2m 05s", "1", "$0.04"],
        ["run-completed", "thumbnails", "completed", "2026-01-02 03:04:05", "4.2s", "2", "$0.08"],
    ]
    # One table: every column starts at the same place on every line.
    assert lines[0].index("WORKFLOW") == lines[5].index("thumbnails") == 15


def test_runs_of_a_file_lists_that_workflows_runs_only(box: Sandbox, history: object) -> None:
    outcome = cli(box, "runs", str(HELLO))

    assert outcome.code == 0, outcome.stderr
    assert [columns(line)[0] for line in outcome.stdout.splitlines()] == ["RUN", "run-hello"]


def test_runs_json_is_one_document_with_every_field(box: Sandbox, history: object) -> None:
    outcome = cli(box, "runs", str(THUMBNAILS), "--json", "--limit", "2")

    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert document["store"] == str(box.store)
    assert document["workflow"] == "thumbnails"
    assert document["total"] == 4
    assert [run["run_id"] for run in document["runs"]] == ["run-live", "run-dead"]
    dead = document["runs"][1]
    assert dead == {
        "run_id": "run-dead",
        "workflow": "thumbnails",
        "file": str(THUMBNAILS),
        "status": "dead",
        "message": "",
        "started_at": "2026-01-02T03:06:05+00:00",
        "ended_at": None,
        "heartbeat_at": "2026-01-02T03:11:55+00:00",
        "seconds": 350.0,
        "images": 1,
        "cost_usd": 0.04,
        "host": HOST,
        "attempt": 1,
        "resumed_from": None,
    }


def test_a_long_silence_is_dead_only_past_six_heartbeats(box: Sandbox) -> None:
    store = local_store(box)
    beat = datetime.now(UTC) - timedelta(minutes=5)
    put_run(store, plan_of(HELLO), "run-quiet", status="running", started=beat, heartbeat=beat)

    box.env["FETCHFLOW_HEARTBEAT_SECONDS"] = "60"  # 6 × 60 s = 6 min: still alive
    alive = cli(box, "runs")
    box.env["FETCHFLOW_HEARTBEAT_SECONDS"] = "30"  # 3 min: dead
    dead = cli(box, "runs")

    assert columns(alive.stdout.splitlines()[1])[2] == "running"
    assert columns(dead.stdout.splitlines()[1])[2] == (
        f"dead (no heartbeat since {beat.strftime('%Y-%m-%d %H:%M:%S')})"
    )


def test_runs_shows_the_limit_newest_of_many_and_says_how_many_more(box: Sandbox) -> None:
    store = local_store(box)
    plan = plan_of(HELLO)
    for n in range(30):  # written in a shuffled order: the listing sorts by start
        number = (n * 7) % 30
        at = T0 + timedelta(minutes=number)
        put_run(
            store,
            plan,
            f"run-{number:02d}",
            status="completed",
            started=at,
            ended=at + timedelta(seconds=2),
        )

    outcome = cli(box, "runs", "--limit", "5")

    assert outcome.code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert [columns(line)[0] for line in lines[1:6]] == [f"run-{n}" for n in range(29, 24, -1)]
    assert lines[6:] == [f"latest 5 of 30 runs in {box.store}; --limit 30 shows them all"]


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_runs_refuses_a_limit_below_one(box: Sandbox, limit: str) -> None:
    outcome = cli(box, "runs", "--limit", limit)

    assert outcome.code == 2
    assert outcome.stdout == ""
    assert outcome.stderr == (
        f"--limit: expected a number of runs of 1 or more, got {limit}\n"
        "  hint: e.g. --limit 50 (the default is 20)\n"
    )


def test_runs_of_an_empty_store_says_so(box: Sandbox) -> None:
    outcome = cli(box, "runs")

    assert (outcome.code, outcome.stdout, outcome.stderr) == (
        0,
        f"no runs in the asset store {box.store} yet\n",
        "",
    )
    assert not box.store.exists()  # reading never writes


def test_runs_of_a_missing_file_exits_2(box: Sandbox) -> None:
    missing = box.tmp / "nope.yaml"

    outcome = cli(box, "runs", str(missing))

    assert outcome.code == 2
    assert outcome.stderr == (
        f"{missing}: cannot read the workflow file: No such file or directory\n"
        "  hint: give a workflow file (fetchflow runs flows/<name>.yaml), or no file for "
        "every workflow's runs\n"
    )


# -- fetchflow show --------------------------------------------------------------------------


def test_show_prints_each_step_in_file_order_with_images_text_and_errors(
    box: Sandbox, history: dict[str, object]
) -> None:
    store = local_store(box)
    done = history["done"]
    assert isinstance(done, list)

    completed = cli(box, "show", "run-completed")
    failed = cli(box, "show", "run-failed")
    dead = cli(box, "show", "run-dead")

    assert completed.code == failed.code == dead.code == 0
    size = len(png(4, 3, "red"))
    assert completed.stdout.splitlines() == [
        "thumbnails · run run-completed",
        "  status   completed: 3 step(s) completed",
        f"  file     {THUMBNAILS}",
        f"  started  2026-01-02 03:04:05 · took 4.2s · on {HOST}",
        "  images   2 · cost $0.08",
        '  inputs   product="vase"',
        f"  store    {box.store}",
        "",
        "  ✓ hero     completed  3.50s",
        f"      hero-1.png  {size} B  4×3  {path_of(store, done[0])}",
        f"      hero-2.png  {len(png(4, 3, 'blue'))} B  4×3  {path_of(store, done[1])}",
        "  ✓ thumbs   completed  0.50s",
        "      []",
        "  ✓ handoff  completed  0.01s",
        "      line one",
        "      line two",
    ]
    cut = history["cut"]
    assert isinstance(cut, dict)
    assert (
        failed.stdout.splitlines()[1]
        == '  status   failed: step "hero" failed: the provider is down'
    )
    assert failed.stdout.splitlines()[8:] == [
        "  ✗ hero     failed     124.00s  2 attempts",
        "      error: the provider is down",
        "        hint: try later",
        f"      hero-1.png  {len(png(4, 3, 'green'))} B  4×3  {path_of(store, cut)}",
        "  – thumbs   skipped",
        '      skipped: upstream step "hero" failed',
        "  – handoff  skipped",
        '      skipped: upstream step "thumbs" failed',
    ]
    kept = history["dead"]
    assert isinstance(kept, dict)
    assert dead.stdout.splitlines()[1:4] == [
        "  status   dead (no heartbeat since 2026-01-02 03:11:55)",
        f"  file     {THUMBNAILS}",
        f"  started  2026-01-02 03:06:05 · took 5m 50s · on {HOST}",
    ]
    assert dead.stdout.splitlines()[8:] == [
        "  … hero     not finished",
        f"      hero-1.png  {len(png(4, 3, 'white'))} B  4×3  {path_of(store, kept)}",
        "  · thumbs   not started",
        "  · handoff  not started",
    ]


def test_show_trims_long_text_and_json_has_it_whole(box: Sandbox) -> None:
    store = local_store(box)
    text = "\n".join(f"line {n} " + "x" * 130 for n in range(1, 10))
    put_run(
        store,
        plan_of(HELLO),
        "run-long",
        status="completed",
        started=T0,
        ended=T0,
        steps={"brief": StepResult("completed", text, seconds=0.0, attempts=1)},
    )

    shown = cli(box, "show", "run-long")
    as_json = cli(box, "show", "run-long", "--json")

    body = shown.stdout.splitlines()[9:]
    assert body[:6] == [f"      line {n} " + "x" * 112 + "…" for n in range(1, 7)]
    assert body[6] == "      … 3 more line(s) (--json or export for all)"
    steps = json.loads(as_json.stdout)["steps"]
    assert steps[0]["step_id"] == "brief"
    assert steps[0]["output"] == text


def test_show_json_gives_each_file_a_link_the_terminal_opens(
    box: Sandbox, history: dict[str, object]
) -> None:
    outcome = cli(box, "show", "run-completed", "--json")

    document = json.loads(outcome.stdout)
    files = document["steps"][0]["files"]
    assert [(f["file_name"], f["width"], f["height"]) for f in files] == [
        ("hero-1.png", 4, 3),
        ("hero-2.png", 4, 3),
    ]
    for entry, record in zip(files, document["steps"][0]["output"], strict=True):
        opened = Path(entry["open"]).read_bytes()
        assert hashlib.sha256(opened).hexdigest() == record["sha256"]
    assert document["status"] == "completed"
    assert document["inputs"] == {"product": "vase"}


@pytest.mark.parametrize(
    ("run_id", "first"),
    [
        ("run-nope", "fetchflow: no run 'run-nope' in the asset store {store}"),
        ("../etc/passwd", "fetchflow: run '../etc/passwd' is not a run id"),
    ],
)
@pytest.mark.parametrize("command", ["show", "export"])
def test_an_unknown_or_malformed_id_exits_2_naming_the_store_and_latest_runs(
    box: Sandbox, history: object, run_id: str, first: str, command: str
) -> None:
    args = [command, run_id] + ([str(box.tmp / "out")] if command == "export" else [])

    outcome = cli(box, *args)

    latest = "run-live (thumbnails), run-hello (hello), run-dead (thumbnails)"
    hint = (
        "  hint: give a run that wrote to this store (the same FETCHFLOW_STORE, on any "
        f"machine); latest runs: {latest}"
        if "no run" in first
        else "  hint: give the id fetchflow run printed (▶ workflow · run <id>) or `fetchflow "
        f"runs` lists; latest runs in {box.store}: {latest}"
    )
    assert outcome.code == 2
    assert outcome.stdout == ""
    assert outcome.stderr == f"{first.format(store=box.store)}\n{hint}\n"
    assert not (box.tmp / "out").exists()


# -- fetchflow export ------------------------------------------------------------------------


def test_export_writes_readable_names_and_never_overwrites_silently(
    box: Sandbox, history: dict[str, object]
) -> None:
    out = box.tmp / "out"
    done = history["done"]
    assert isinstance(done, list)

    first = cli(box, "export", "run-completed", str(out))
    again = cli(box, "export", "run-completed", str(out))
    (out / "hero-2.png").write_bytes(b"my own edit")
    refused = cli(box, "export", "run-completed", str(out))
    kept_edit = (out / "hero-2.png").read_bytes()
    forced = cli(box, "export", "run-completed", str(out), "--force")

    red, blue = len(png(4, 3, "red")), len(png(4, 3, "blue"))
    assert first.code == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"wrote     {out}/hero-1.png  ({red} B, 4×3)",
        f"wrote     {out}/hero-2.png  ({blue} B, 4×3)",
        f"wrote     {out}/handoff.txt  (18 B)",
        f"exported 3 file(s) of run run-completed to {out}",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["handoff.txt", "hero-1.png", "hero-2.png"]
    assert (out / "handoff.txt").read_text(encoding="utf-8") == "line one\nline two\n"
    assert again.stdout.splitlines()[-1] == (
        f"exported 3 file(s) of run run-completed to {out} (3 unchanged)"
    )
    assert refused.code == 2
    assert refused.stdout == ""
    assert refused.stderr == (
        f"fetchflow: 1 file(s) in {out} differ from run run-completed's and were not replaced "
        f"(nothing was written): {out}/hero-2.png\n"
        "  hint: export into another folder, or add --force to replace them\n"
    )
    assert kept_edit == b"my own edit"
    assert forced.code == 0
    assert forced.stdout.splitlines()[1] == f"replaced  {out}/hero-2.png  ({blue} B, 4×3)"
    for n, record in enumerate(done, start=1):
        data = (out / f"hero-{n}.png").read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]


def test_export_of_a_failed_run_writes_what_it_made_and_kept(
    box: Sandbox, history: dict[str, object]
) -> None:
    out = box.tmp / "out"

    outcome = cli(box, "export", "run-failed", str(out))

    cut = history["cut"]
    assert isinstance(cut, dict)
    assert outcome.code == 0
    assert sorted(p.name for p in out.iterdir()) == ["hero-1.png"]
    assert hashlib.sha256((out / "hero-1.png").read_bytes()).hexdigest() == cut["sha256"]


def test_export_refuses_a_stored_file_whose_bytes_changed(
    box: Sandbox, history: dict[str, object]
) -> None:
    store = local_store(box)
    done = history["done"]
    assert isinstance(done, list)
    damaged = Path(path_of(store, done[1]))
    damaged.write_bytes(b"not the image any more")
    out = box.tmp / "out"

    outcome = cli(box, "export", "run-completed", str(out))

    assert outcome.code == 1
    assert outcome.stderr == (
        f'fetchflow: step "hero": {damaged} is corrupted: its bytes do not match the sha256 in '
        "its name\n  hint: delete the file and run the producing step again\n"
    )
    assert not out.exists()  # every file is read and checked before any is written


def test_run_out_that_is_a_file_exits_2_before_anything(box: Sandbox) -> None:
    a_file = box.tmp / "taken"
    a_file.write_text("mine", encoding="utf-8")

    outcome = box.fetchflow("run", str(HELLO), "--out", str(a_file))

    assert outcome.code == 2
    assert outcome.stderr == (
        f"--out: {a_file} is a file, not a folder\n"
        "  hint: give a folder to write the run's files into (made if missing)\n"
    )
    box.assert_nothing_happened(outcome)
    assert a_file.read_text(encoding="utf-8") == "mine"


# -- S3 (a real rclone S3 server) ------------------------------------------------------------


@pytest.fixture
def rclone(tmp_path: Path) -> Iterator[RcloneS3]:
    with running_rclone(tmp_path) as server:
        yield server


@pytest.mark.s3server
def test_runs_show_and_export_read_an_s3_store_and_show_fresh_links(
    box: Sandbox, rclone: RcloneS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws = {
        "AWS_ENDPOINT_URL": rclone.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(box.tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(box.tmp / "no-aws-credentials"),
    }
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    box.env.update(aws, FETCHFLOW_STORE=f"s3://{BUCKET}/team")
    from fetchflow.settings import Settings
    from fetchflow.storage import open_store

    store = open_store(Settings(_env_file=None, home=box.tmp / "home", store=f"s3://{BUCKET}/team"))
    records = [
        image(store, "run-s3", "hero", f"hero-{n}.png", c, 0.04)
        for n, c in ((1, "red"), (2, "blue"))
    ]
    put_run(
        store,
        plan_of(THUMBNAILS),
        "run-s3",
        status="completed",
        started=T0,
        ended=T0 + timedelta(seconds=3),
        steps={"hero": StepResult("completed", records, seconds=2.0, attempts=1)},
    )
    out = box.tmp / "out"

    listed = cli(box, "runs")
    shown = cli(box, "show", "run-s3")
    exported = cli(box, "export", "run-s3", str(out))

    assert [columns(line) for line in listed.stdout.splitlines()][1] == [
        "run-s3",
        "thumbnails",
        "completed",
        "2026-01-02 03:04:05",
        "3.0s",
        "2",
        "$0.08",
    ]
    links = re.findall(r"4×3  (\S+)", shown.stdout)
    assert len(links) == 2
    for link, record in zip(links, records, strict=True):
        assert link.startswith(f"{rclone.endpoint}/{BUCKET}/team/")
        assert "X-Amz-Signature=" in link  # a fresh presigned link, not the stored one
        with urllib.request.urlopen(link, timeout=10) as answer:
            assert hashlib.sha256(answer.read()).hexdigest() == record["sha256"]
    assert exported.code == 0, exported.stderr
    for n, record in enumerate(records, start=1):
        assert hashlib.sha256((out / f"hero-{n}.png").read_bytes()).hexdigest() == record["sha256"]
    for outcome in (listed, shown, exported):
        assert SECRET_KEY not in outcome.stdout + outcome.stderr


# -- real runs -------------------------------------------------------------------------------


def real_run(box: Sandbox, prefect_api: str, *args: str) -> Outcome:
    box.env["PREFECT_API_URL"] = prefect_api
    try:
        return box.fetchflow("run", *args)
    finally:
        del box.env["PREFECT_API_URL"]


def run_id_of(outcome: Outcome) -> str:
    found = re.search(r"▶ \w+ · run (\S+)", outcome.stderr)
    assert found, outcome.stderr
    return found.group(1)


@pytest.mark.prefect
def test_a_real_run_with_out_then_runs_show_and_export_agree(
    box: Sandbox, prefect_api: str
) -> None:
    out = box.tmp / "out"

    thumbnails = real_run(box, prefect_api, str(THUMBNAILS), "--out", str(out))
    hello = real_run(box, prefect_api, str(HELLO))
    listed = cli(box, "runs")
    only = cli(box, "runs", str(THUMBNAILS))
    shown = cli(box, "show", run_id_of(thumbnails), "--json")
    again = cli(box, "export", run_id_of(thumbnails), str(box.tmp / "again"))

    assert thumbnails.code == 0, thumbnails.stderr
    assert hello.code == 0, hello.stderr
    assert again.code == 0, again.stderr
    run = run_id_of(thumbnails)
    names = ["hero-1.png", "hero-2.png", "thumbs-1.webp", "thumbs-2.webp", "handoff.txt"]
    written = [line for line in thumbnails.stderr.splitlines() if line.startswith("wrote")]
    assert [line.split()[1] for line in written] == [str(out / name) for name in names]
    assert f"exported 5 file(s) of run {run} to {out}" in thumbnails.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    steps = {step["step_id"]: step for step in json.loads(shown.stdout)["steps"]}
    assert list(steps) == ["hero", "thumbs", "handoff"]
    for step in ("hero", "thumbs"):
        for n, record in enumerate(steps[step]["output"], start=1):
            suffix = Path(record["file_name"]).suffix
            data = (out / f"{step}-{n}{suffix}").read_bytes()
            assert hashlib.sha256(data).hexdigest() == record["sha256"]
            assert (box.tmp / "again" / f"{step}-{n}{suffix}").read_bytes() == data
    assert (out / "handoff.txt").read_text(encoding="utf-8") == steps["handoff"]["output"] + (
        "" if steps["handoff"]["output"].endswith("\n") else "\n"
    )
    rows = [columns(line) for line in listed.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[2], row[5], row[6]) for row in rows] == [
        (run_id_of(hello), "hello", "completed", "0", "—"),
        (run, "thumbnails", "completed", "4", "$0.00"),
    ]
    assert [columns(line)[0] for line in only.stdout.splitlines()] == ["RUN", run]


@pytest.mark.prefect
def test_run_out_of_a_failed_run_writes_the_images_it_made(
    box: Sandbox, prefect_api: str, plugin_pythonpath: str
) -> None:
    box.env["PYTHONPATH"] += f":{plugin_pythonpath}"
    out = box.tmp / "out"

    outcome = real_run(box, prefect_api, str(PARTIAL), "--out", str(out))

    assert outcome.code == 1, outcome.stderr
    assert "the reviewer turned down hero-1.png" in outcome.stderr
    assert sorted(p.name for p in out.iterdir()) == ["hero-1.png", "hero-2.png"]
    for name in ("hero-1.png", "hero-2.png"):
        with Image.open(out / name) as opened:
            assert opened.size == (1024, 768)
    assert outcome.stderr.splitlines()[-1] == (
        f"exported 2 file(s) of run {run_id_of(outcome)} to {out}"
    )


def test_export_names_a_contact_sheet_as_such_and_numbers_only_the_images(box: Sandbox) -> None:
    store = local_store(box)
    shots = [image(store, "run-sheet", "hero", f"hero-{c}-1.png", c, 0.0) for c in ("red", "blue")]
    sheet = store.put(
        png(8, 3, "white"),
        file_name="hero-contact-sheet.png",
        file_type="image/png",
        step_id="hero",
        run_id="run-sheet",
        width=8,
        height=3,
        provenance={"kind": "contact_sheet"},
    ).model_dump(mode="json")
    put_run(
        local_store(box),
        plan_of(THUMBNAILS),
        "run-sheet",
        status="completed",
        started=T0,
        ended=T0 + timedelta(seconds=1),
        steps={"hero": StepResult("completed", [*shots, sheet], seconds=1.0, attempts=1)},
    )

    outcome = cli(box, "export", "run-sheet", str(box.tmp / "out"))
    shown = cli(box, "show", "run-sheet")
    listed = cli(box, "runs")

    assert outcome.code == 0, outcome.stderr
    # The sheet is a picture of the two images, not a third image.
    assert "  images   2 · cost $0.00" in shown.stdout.splitlines()
    assert columns(listed.stdout.splitlines()[1])[:6] == [
        "run-sheet", "thumbnails", "completed", "2026-01-02 03:04:05", "1.0s", "2",
    ]  # fmt: skip
    names = ["hero-1.png", "hero-2.png", "hero-contact-sheet.png"]
    assert sorted(p.name for p in (box.tmp / "out").iterdir()) == names
    for name, record in zip(names, [*shots, sheet], strict=True):
        data = (box.tmp / "out" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
