"""Secrets never leak: a run with known keys, and everything it leaves searched for them.

One real Prefect flow run (the session's server, ``prefect_api``) of
``tests/data/secrets/canary.yaml``: an OpenAI image paid with a personal key, a Gemini image
paid with the operator's hosted key, four steps whose key the fake provider rejects with a
401 that echoes the key back (two of them keys that do not *look* like keys, so only
exact-value masking can catch them; one read from a Prefect Secret block), and a template
that dumps every name a template can read. Prefect gets every log level for that run.
Then every place the run wrote to is searched for each key and its first 12 characters, and
each place is checked to hold something (a search of nothing proves nothing). The command
line is checked the same way in a subprocess on the session's server, with ``--json`` and with
the progress display plus Prefect's own log lines (``--verbose``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fetchflow.errors import WorkflowInvalid
from fetchflow.registry import StepRegistry
from fetchflow.run.report import RunReport
from fetchflow.settings import Settings
from fetchflow.workflow.checking import check_file
from fetchflow.workflow.inputs import resolve_inputs
from steps.imaging.settings import ImageSettings, image_settings

# The fake providers live in tests/steps/fakes, importable as ``fakes`` once tests/steps is
# on sys.path (pytest puts it there for the modules in tests/steps; this module is not one).
_FAKES_PARENT = str(Path(__file__).resolve().parent / "steps")
if _FAKES_PARENT not in sys.path:
    sys.path.append(_FAKES_PARENT)

from fakes import RecordedRequest, Reply  # noqa: E402
from fakes.fake_gemini import FakeGemini, google_error_body  # noqa: E402
from fakes.fake_openai import FakeOpenAI, openai_error_body  # noqa: E402

pytestmark = pytest.mark.prefect

DATA = Path(__file__).resolve().parent / "data" / "secrets"
REPO = Path(__file__).resolve().parents[1]
REGISTRY = StepRegistry.from_entry_points()

OPENAI_KEY = "sk-test-LEAKCANARY-4242"
HOSTED_GEMINI_KEY = "AIza-LEAKCANARY-hosted"
#: A personal Gemini key shaped like no known key: only masking the exact value hides it.
PLAIN_GEMINI_KEY = "plain-LEAKCANARY-gemini-77"
#: A personal OpenAI key in a Prefect Secret block (``api_key_secret``), also unshaped.
BLOCK_OPENAI_KEY = "block-LEAKCANARY-openai-55"
SECRET_BLOCK = "secrets-canary-openai"
KEYS = (OPENAI_KEY, HOSTED_GEMINI_KEY, PLAIN_GEMINI_KEY, BLOCK_OPENAI_KEY)
#: What the search looks for: each key and its first 12 characters (a key cut short leaks too).
NEEDLES = tuple(dict.fromkeys(n for key in KEYS for n in (key, key[:12])))

#: Steps whose prompt holds this are refused by the fakes with a 401 echoing the key.
REJECT = "REJECT-THIS-KEY"


def found_in(text: str) -> list[str]:
    """The needles ``text`` contains."""
    return [needle for needle in NEEDLES if needle in text]


class RejectingOpenAI(FakeOpenAI):
    """The fake OpenAI, answering a prompt marked ``REJECT`` with a 401 echoing the key."""

    def answer(self, request: RecordedRequest) -> Reply:
        if REJECT not in json.dumps(request.json):
            return super().answer(request)
        message = f"Incorrect API key provided: {request.credential}. You can find your key."
        return Reply(401, openai_error_body(message, "invalid_request_error", "invalid_api_key"))


class RejectingGemini(FakeGemini):
    """The fake Gemini, answering a prompt marked ``REJECT`` with a 401 echoing the key."""

    def answer(self, request: RecordedRequest) -> Reply:
        if REJECT not in json.dumps(request.json):
            return super().answer(request)
        message = f"API key not valid: {request.credential} was rejected."
        return Reply(401, google_error_body(401, "UNAUTHENTICATED", message))


@dataclass
class CanaryRun:
    """The run and every place it left something, as text documents per place."""

    report: RunReport
    settings: Settings
    image_settings: ImageSettings
    home: Path
    openai_credentials: list[str | None]
    gemini_credentials: list[str | None]
    places: dict[str, list[str]] = field(default_factory=dict)


def _clean_environment(
    scrub_environ: Callable[[pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    scrub_environ(monkeypatch)
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(home)  # no .env of the developer's is read


def _api_pages(client: Any, path: str, body: dict[str, Any]) -> list[Any]:
    """Every item of a Prefect ``/.../filter`` endpoint, page by page (raw JSON)."""
    items: list[Any] = []
    while True:
        response = client.request("POST", path, json={**body, "limit": 200, "offset": len(items)})
        page = response.json()
        items += page
        if len(page) < 200:
            return items


def _image_metadata(path: Path) -> str:
    """What an image carries besides pixels, decoded: PNG text chunks (zTXt and iTXt
    decompressed, XMP among them), EXIF and every other ``info`` entry Pillow reads."""
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        image.load()
        parts = [
            f"{path.name}: {image.format} {image.size} {image.mode}",
            f"info={image.info!r}",
            f"text={getattr(image, 'text', {})!r}",
            f"exif={dict(image.getexif())!r}",
        ]
    return "\n".join(parts)


def _prefect_database_dump() -> str:
    """Every row of the Prefect server's SQLite database, as SQL text (WAL included)."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    path = url.split(":///", 1)[1]
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def _collect(run: CanaryRun) -> None:
    """Read back everything the run produced, place by place."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    places = run.places
    run_id = run.report.run_id
    places["report JSON"] = [json.dumps(run.report.to_json(), default=str)]

    files = sorted(p for p in run.home.rglob("*") if p.is_file())
    places["files under FETCHFLOW_HOME (bytes)"] = [
        p.read_bytes().decode("latin-1") + f"\n{p}" for p in files
    ]
    places["files under FETCHFLOW_HOME (paths)"] = [str(p) for p in files]
    state = (run.home / "assets" / "runs", run.home / "assets" / "cache")
    assets = [
        p
        for p in files
        if p.is_relative_to(run.home / "assets") and not any(p.is_relative_to(s) for s in state)
    ]
    places["asset files"] = [p.read_bytes().decode("latin-1") for p in assets]
    places["image metadata (PNG chunks, EXIF, XMP)"] = [
        _image_metadata(p) for p in assets if p.suffix in {".png", ".jpg", ".webp"}
    ]
    places["run checkpoints (runs/<id>/**.json)"] = [
        p.read_text(encoding="utf-8") for p in (run.home / "assets" / "runs").rglob("*.json")
    ]
    places["generation cache (cache/*.json)"] = [
        p.read_text(encoding="utf-8") for p in (run.home / "assets" / "cache").rglob("*.json")
    ]
    places["spool"] = [
        p.read_bytes().decode("latin-1") for p in (run.home / "spool").rglob("*") if p.is_file()
    ]

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        flow_run = client.request("GET", f"/flow_runs/{run_id}").json()
        places["flow run (parameters, state, everything)"] = [json.dumps(flow_run)]
        places["flow run parameters"] = [json.dumps(flow_run["parameters"])]
        places["flow run states"] = [
            json.dumps(state)
            for state in client.request(
                "GET", "/flow_run_states/", params={"flow_run_id": run_id}
            ).json()
        ]
        task_runs = _api_pages(
            client,
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"},
        )
        places["task runs"] = [json.dumps(task_run) for task_run in task_runs]
        places["task run state messages"] = [
            message
            for task_run in task_runs
            if (message := (task_run["state"] or {}).get("message"))
        ]
        places["task run states"] = [
            json.dumps(state)
            for task_run in task_runs
            for state in client.request(
                "GET", "/task_run_states/", params={"task_run_id": task_run["id"]}
            ).json()
        ]
        places["Prefect logs (flow and task runs)"] = [
            json.dumps(log)
            for log in _api_pages(
                client,
                "/logs/filter",
                {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"},
            )
        ]
        # Not client.read_artifacts: Prefect 3.8.8's client sends the filters left out as
        # null, which its server refuses (see tests/orchestration/test_artifacts.py).
        places["artifacts"] = [
            json.dumps(artifact)
            for artifact in _api_pages(
                client,
                "/artifacts/filter",
                {"artifacts": {"flow_run_id": {"any_": [run_id]}}, "sort": "KEY_ASC"},
            )
        ]
    places["Prefect database (every row)"] = [_prefect_database_dump()]
    places["Settings repr/str/JSON"] = [
        repr(run.settings),
        str(run.settings),
        run.settings.model_dump_json(),
        repr(run.image_settings),
        str(run.image_settings),
        run.image_settings.model_dump_json(),
    ]


@pytest.fixture(scope="module")
def canary_run(
    prefect_api: str,
    scrub_environ: Callable[[pytest.MonkeyPatch], None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CanaryRun]:
    from prefect.blocks.system import Secret

    from fetchflow.orchestration.runner import run_plan

    home = tmp_path_factory.mktemp("secrets") / "home"
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        RejectingOpenAI() as openai,
        RejectingGemini() as gemini,
    ):
        _clean_environment(scrub_environ, monkeypatch, home)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", openai.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", PLAIN_GEMINI_KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", gemini.base_url)
        monkeypatch.setenv("FETCHFLOW_HOSTED_GEMINI_API_KEY", HOSTED_GEMINI_KEY)
        monkeypatch.setenv("FETCHFLOW_HOSTED_GEMINI_BASE_URL", gemini.base_url)
        Secret(value=BLOCK_OPENAI_KEY).save(SECRET_BLOCK, overwrite=True)
        settings = Settings(home=home, store=str(home / "assets"))
        plan = check_file(DATA / "canary.yaml", REGISTRY)
        # The session sends only warnings to Prefect (PREFECT_LOGGING_LEVEL); users see info
        # and may turn on debug: every level goes to the server for this run.
        prefect_logger = logging.getLogger("prefect")
        level = prefect_logger.level
        prefect_logger.setLevel(logging.DEBUG)
        try:
            report = run_plan(plan, resolve_inputs(plan.header, {}), settings=settings, drain=True)
        finally:
            prefect_logger.setLevel(level)
        assert not openai.crashes and not gemini.crashes, (openai.crashes, gemini.crashes)
        run = CanaryRun(
            report=report,
            settings=settings,
            image_settings=image_settings(),
            home=home,
            openai_credentials=[r.credential for r in openai.requests],
            gemini_credentials=[r.credential for r in gemini.requests],
        )
        _collect(run)
        yield run


def test_the_keys_were_used_and_echoed_back(canary_run: CanaryRun) -> None:
    """The search below is only worth something if the keys really went out and came back."""
    report = canary_run.report
    assert report.status == "partial", report.message
    assert sorted(canary_run.openai_credentials, key=str) == sorted(
        [OPENAI_KEY, OPENAI_KEY, BLOCK_OPENAI_KEY]
    )
    assert sorted(canary_run.gemini_credentials, key=str) == sorted(
        [HOSTED_GEMINI_KEY, HOSTED_GEMINI_KEY, PLAIN_GEMINI_KEY]
    )
    for step_id in ("hero", "detail", "scope_dump"):
        assert report.steps[step_id].status == "completed", report.steps[step_id].error
    for step_id in (
        "rejected_openai",
        "rejected_hosted_gemini",
        "rejected_personal_gemini",
        "rejected_secret_block",
    ):
        step = report.steps[step_id]
        assert step.status == "failed" and step.attempts == 1
        # The provider's message is kept (it says what went wrong), the key in it masked.
        assert step.error is not None and "[redacted]" in step.error, step.error
    assert report.steps["detail"].output[0]["charge_type"] == "hosted"  # type: ignore[index]


PLACES = [
    "report JSON",
    "files under FETCHFLOW_HOME (bytes)",
    "files under FETCHFLOW_HOME (paths)",
    "asset files",
    "image metadata (PNG chunks, EXIF, XMP)",
    "run checkpoints (runs/<id>/**.json)",
    "generation cache (cache/*.json)",
    "flow run (parameters, state, everything)",
    "flow run parameters",
    "flow run states",
    "task runs",
    "task run state messages",
    "task run states",
    "Prefect logs (flow and task runs)",
    "artifacts",
    "Prefect database (every row)",
    "Settings repr/str/JSON",
]


@pytest.mark.parametrize("place", PLACES)
def test_no_key_anywhere(canary_run: CanaryRun, place: str) -> None:
    documents = canary_run.places[place]
    assert documents and all(documents), f"nothing to search in {place}"
    leaks = {
        f"{place}[{number}]": found
        for number, document in enumerate(documents)
        if (found := found_in(document))
    }
    assert leaks == {}


def test_the_spool_is_searched_when_it_holds_anything(canary_run: CanaryRun) -> None:
    # A local store never spools: the spool is empty here, and searched all the same.
    assert [found_in(document) for document in canary_run.places["spool"]] == [
        [] for _ in canary_run.places["spool"]
    ]


def test_each_place_holds_what_it_should(canary_run: CanaryRun) -> None:
    """The searches read the real thing, not an empty or wrong answer."""
    places, run_id = canary_run.places, canary_run.report.run_id
    assert len(places["image metadata (PNG chunks, EXIF, XMP)"]) == 2  # hero and detail
    # The run's record, one document per step (7) and one per image kept as it was stored.
    assert len(places["run checkpoints (runs/<id>/**.json)"]) >= 1 + 7 + 2
    assert len(places["generation cache (cache/*.json)"]) == 2  # hero and detail: cache: true
    assert json.loads(places["flow run parameters"][0]) == {"product": "blue vase"}
    assert len(places["task runs"]) == 7
    assert any("[redacted]" in message for message in places["task run state messages"])
    logs = places["Prefect logs (flow and task runs)"]
    assert any("Traceback (most recent call last)" in log for log in logs)
    assert any('"level": 10' in log for log in logs)  # debug lines were sent and read
    assert any("hosted image usage" in log for log in logs)
    assert any("run-summary" in artifact for artifact in places["artifacts"])
    assert run_id in places["Prefect database (every row)"][0]
    assert "**********" in repr(canary_run.image_settings)  # the hosted key is there, masked
    assert canary_run.image_settings.hosted_gemini_api_key is not None
    assert canary_run.image_settings.hosted_gemini_api_key.get_secret_value() == HOSTED_GEMINI_KEY


def test_a_rejected_key_error_says_where_that_key_came_from(canary_run: CanaryRun) -> None:
    steps = canary_run.report.steps
    sources = {
        "rejected_openai": "OPENAI_API_KEY",
        "rejected_personal_gemini": "GEMINI_API_KEY",
        "rejected_hosted_gemini": "FETCHFLOW_HOSTED_GEMINI_API_KEY",
        "rejected_secret_block": f'Secret block "{SECRET_BLOCK}"',
    }
    wrong = {
        step_id: steps[step_id].error
        for step_id, source in sources.items()
        if source not in (steps[step_id].error or "")
    }
    assert wrong == {}


def test_template_scope_holds_run_and_inputs_but_no_key(canary_run: CanaryRun) -> None:
    dump = canary_run.report.steps["scope_dump"].output
    assert isinstance(dump, str)
    assert canary_run.report.run_id in dump and "blue vase" in dump
    assert found_in(dump) == []


def test_templates_cannot_name_the_environment_settings_or_secrets() -> None:
    with pytest.raises(WorkflowInvalid, match=r'unknown name "env"') as caught:
        check_file(DATA / "template_reads_secrets.yaml", REGISTRY)
    messages = [problem.format() for problem in caught.value.problems]
    for name in ("env", "settings", "secrets"):
        assert sum(f'unknown name "{name}"' in message for message in messages) == 1, messages


# -- the command line -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One FETCHFLOW_HOME for both command-line runs."""
    return tmp_path_factory.mktemp("secrets-cli") / "home"


@pytest.mark.parametrize(
    "flags", [("--json",), ("--verbose",)], ids=["json", "progress-and-prefect-logs"]
)
def test_cli_output_never_shows_a_key_even_when_the_provider_rejects_it(
    flags: tuple[str, ...],
    cli_home: Path,
    tmp_path: Path,
    plugin_pythonpath: str,
    clean_env: Mapping[str, str],
    prefect_api: str,
) -> None:
    env = dict(clean_env)
    env["PREFECT_API_URL"] = prefect_api
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), plugin_pythonpath])
    env["FETCHFLOW_HOME"] = str(cli_home)
    env["NO_COLOR"] = "1"
    env["OPENAI_API_KEY"] = OPENAI_KEY
    env["FETCHFLOW_HOSTED_GEMINI_API_KEY"] = HOSTED_GEMINI_KEY
    with RejectingOpenAI() as openai, RejectingGemini() as gemini:
        env["OPENAI_BASE_URL"] = openai.base_url
        env["FETCHFLOW_HOSTED_GEMINI_BASE_URL"] = gemini.base_url
        done = subprocess.run(
            [sys.executable, "-m", "fetchflow.cli", "run", str(DATA / "cli_rejected.yaml"), *flags],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=240,
            check=False,
        )
        assert [r.credential for r in openai.requests] == [OPENAI_KEY]
        assert [r.credential for r in gemini.requests] == [HOSTED_GEMINI_KEY]
    assert done.returncode == 0, (done.stdout, done.stderr)  # partial: the run went on
    if flags == ("--json",):
        document = json.loads(done.stdout)
        assert document["status"] == "partial"
        assert document["steps"]["hero"]["status"] == "completed"
        rejected = document["steps"]["rejected"]
        assert rejected["status"] == "failed" and "[redacted]" in rejected["error"]
    else:  # the rejection is on the terminal, with Prefect's traceback, the key masked
        assert "the API key was rejected" in done.stderr and "[redacted]" in done.stderr
        assert "Traceback (most recent call last)" in done.stderr
    assert found_in(done.stdout) == []
    assert found_in(done.stderr) == []
